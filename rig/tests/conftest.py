import sys
from pathlib import Path

# the load-test modules are plain files next to the locustfile, not a package
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "loadtest"))
