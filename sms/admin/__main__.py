import sys

from sms.admin.cli import main

sys.exit(main())
