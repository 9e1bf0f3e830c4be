"""The MUSIC method: simulated trees with a chosen and a rewritten branch, and pairs cut from them."""
