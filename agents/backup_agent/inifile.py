"""INI-style secret files (MySQL option files, AWS credentials files), read strictly:
a file that cannot be read or parsed is one ``BackupError`` naming the file and what
it should have been, never a traceback."""

from __future__ import annotations

import configparser

from backup_agent.errors import BackupError


def read(path: str, what: str, parser: configparser.ConfigParser) -> configparser.ConfigParser:
    """``parser`` filled from ``path``, a file that should be ``what`` ("an AWS
    credentials file")."""
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise BackupError(f"cannot read {path} ({what}): {exc.strerror}") from exc
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise BackupError(f"{path}: not {what} ({type(exc).__name__})") from exc
    return parser
