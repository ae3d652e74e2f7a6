import os
import sys
from pathlib import Path

# numba reads its cache location at import; keep it out of the source tree.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".numba_cache"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
