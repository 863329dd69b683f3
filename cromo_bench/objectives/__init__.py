"""SSL objectives: one file each. `Objective` in base.py is the contract every method relies on."""
