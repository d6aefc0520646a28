"""scim-bridge: a SCIM 2.0 server that provisions Microsoft Entra ID into Modyo."""

__version__ = "0.1.0"
