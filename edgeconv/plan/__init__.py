"""Planning: the budget planner, recipes, target profiles, and the memory / arena models."""
