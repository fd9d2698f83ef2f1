"""Container side of sipmediagw: the supervisor run as ``python3 -m sipmediagw.gateway`` inside a gateway container.

Everything under this package runs in the image, where only stdlib + selenium + yaml + psutil exist (no click, no
docker-py): keep imports to those.
"""
