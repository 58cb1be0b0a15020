"""ClassroomSpawner's one selection per spawn, without a hub or a cluster: made once,
made again only when the roster changed, and what the manifest is built from."""

from traitlets.config import Config

from classroom_spawner.offline import build_spawner

COURSES = """\
courses:
  - id: ds101
    title: Data Science 101
    image: example.org/ds101:1
    students: [ann]
  - id: phys210
    title: Physics
    image: example.org/phys210:1
    students: [{phys}]
"""


async def test_one_selection_per_spawn_made_again_only_when_the_roster_changed(
    write_file, rewrite_file
):
    path = write_file("courses.yaml", COURSES.format(phys="ann"))
    c = Config()
    c.ClassroomRoster.course_files = [path]
    c.ClassroomRoster.check_interval = 0
    spawner = await build_spawner(c, "ann")
    spawner.user_options = {"profile": "phys210"}
    first = await spawner.profile_selection()
    assert first.course.id == "phys210"
    # the same object while the roster is the same snapshot
    assert await spawner.profile_selection() is first
    # the roster changes: made again (saved options: the fallback, with its notice)
    rewrite_file(path, COURSES.format(phys="someone-else"))
    second = await spawner.profile_selection()
    assert second is not first and second.course.id == "ds101" and second.notice
    # the manifest is built from the selection KubeSpawner applied, not a new one
    await spawner.load_user_options()
    rewrite_file(path, COURSES.format(phys="ann"))
    pod = await spawner.get_pod_manifest()
    assert pod.spec.containers[0].image == "example.org/ds101:1"
    assert (await spawner.profile_selection(recheck=False)) is second
