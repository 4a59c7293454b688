"""The AWS credential chain: one module per provider, the chain, and the refresher."""
