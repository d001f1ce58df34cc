"""The descent transforms (solvers/transform.py has the contract), one small file each."""
