import sys

from talkingface.cli import main

sys.exit(main())
