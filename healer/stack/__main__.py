"""`python -m healer.stack up|down|status` (the same as `healer up|down|status`)."""

from __future__ import annotations

import sys

from healer.stack.control import StackError, down, status, up


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    try:
        if command == "up":
            cfg = up(echo=print)
            print(f"stack is up; clients: source {cfg.env_file}")
        elif command == "down":
            if not down(echo=print):
                print("nothing was running")
        elif command == "status":
            for name, pid in status().items():
                print(f"{name:10s} {'running (pid ' + str(pid) + ')' if pid else 'stopped'}")
        else:
            print(f"unknown command {command!r}: use up, down or status", file=sys.stderr)
            return 2
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
