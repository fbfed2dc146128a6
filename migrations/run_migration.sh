#!/usr/bin/env bash
# The seed's runner: `cd migrations && ./run_migration.sh [--dry-run]`.
# A thin wrapper of `aicrm db migrate`: every flag is passed through, and the
# DB_HOST, DB_PORT, DB_USER, DB_NAME and DB_PASSWORD variables are honoured.
# Backups go to ./backups (this folder) unless BACKUP_DIR says otherwise.
# --online applies 001 while the CRM keeps working: short transactions, a batched
# backfill (--batch-seconds, --throttle), resumable: run the same command again after
# an interruption; `aicrm db status` shows the phase, `aicrm db downgrade 000` undoes
# an unfinished run (docs/online-migration.md).
# Exit codes: 0 applied or nothing to do; 1 failed and rolled back;
# 2 usage, prerequisite, connection or lock error; 3 integrity check refused.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if command -v aicrm >/dev/null 2>&1; then
  exec aicrm db migrate "$@"
elif [ -x "$here/../.venv/bin/aicrm" ]; then
  exec "$here/../.venv/bin/aicrm" db migrate "$@"
else
  echo "error: the aicrm command was not found; run ../scripts/demo once (or pip install .) first" >&2
  exit 2
fi
