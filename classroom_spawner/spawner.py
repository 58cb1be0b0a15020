"""ClassroomSpawner: KubeSpawner with course profiles, per-user volumes and lessons."""

from kubespawner import KubeSpawner


class ClassroomSpawner(KubeSpawner):
    """A KubeSpawner that offers each student the profiles of their own courses."""
