"""The floor under "equal results" bounds of the speed switches."""
