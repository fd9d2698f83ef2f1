"""sipmediagw: a Docker-based media gateway giving SIP endpoints audio+video access to web-conference rooms."""

__version__ = "0.1.0"
