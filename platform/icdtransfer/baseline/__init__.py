"""The paper's logistic-regression baseline."""
