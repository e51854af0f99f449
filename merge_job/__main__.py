import sys

from merge_job.cli import main

sys.exit(main())
