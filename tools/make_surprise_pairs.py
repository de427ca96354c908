"""Generate violation-of-expectation pairs for ``vjepa surprise`` (see vjepa/data/surprise_pairs.py).

python tools/make_surprise_pairs.py --out runs/surprise_pairs --pairs 100
"""

from vjepa.data.surprise_pairs import main

if __name__ == "__main__":
    main()
