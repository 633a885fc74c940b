"""icdtransfer: neural transfer learning for ICD coding, as a DVC + Ray ablation platform."""

__version__ = "0.1.0"
