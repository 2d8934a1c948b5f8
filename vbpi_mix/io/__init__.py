"""Reading alignment and tree files (Biopython, DendroPy); plain Python and numpy only."""
