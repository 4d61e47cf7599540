"""Customer equity: value facts, the four indices, the equity score and tiers."""
