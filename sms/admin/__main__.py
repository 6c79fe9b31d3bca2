import os
import sys

from sms.admin.cli import main

try:
    status = main()
    sys.stdout.flush()
except BrokenPipeError:
    # The reader went away (`python -m sms.admin ... | head`): what it read is all it wanted.
    # Point stdout at nothing, so that the flush at exit does not fail again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    status = 141  # as a shell reports a command ended by SIGPIPE
sys.exit(status)
