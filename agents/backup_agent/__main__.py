"""Allow ``python -m backup_agent``."""

from backup_agent.cli import main

raise SystemExit(main())
