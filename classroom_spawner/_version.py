"""classroom-spawner version (bumped with tbump)."""

__version__ = "0.1.0.dev0"

version_info = tuple(
    int(part) if part.isdigit() else part
    for part in __version__.replace(".dev", ".dev.").split(".")
)
