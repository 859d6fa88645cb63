import sys

from vo_similarity.cli import main

sys.exit(main())
