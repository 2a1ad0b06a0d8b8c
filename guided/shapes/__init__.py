"""Width shapes: budgets and guided or uniform designs (`design`), what pruning kept (`patterns`), populations of
shapes at one budget (`population`).
"""
