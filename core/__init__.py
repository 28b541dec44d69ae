"""The bottom layer: what every other layer uses (errors, the command frame, files, safe
loading of untrusted files). It imports nothing of the project's."""
