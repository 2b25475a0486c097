"""fedvssl_jax: federated and two-stream self-supervised video learning (FedVSSL, GOCA) in JAX/Flax."""

__version__ = "0.1.0"
