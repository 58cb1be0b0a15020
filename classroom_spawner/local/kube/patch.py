"""The three PATCH flavours of the Kubernetes API.

- ``application/merge-patch+json``: RFC 7386 JSON merge patch (maps merge,
  ``null`` deletes a key, lists are replaced).
- ``application/strategic-merge-patch+json``: like a merge patch, but lists that
  Kubernetes declares with a *merge key* are merged element by element (e.g.
  ``containers`` by ``name``, ``volumeMounts`` by ``mountPath``), and the
  ``$patch: delete`` / ``$patch: replace`` directives are honoured. Lists without
  a known merge key are replaced, as for a merge patch. The merge keys are a
  hand-picked subset of Kubernetes' ``patchMergeKey`` annotations, covering the
  fields pods, services, PVCs and metadata use.
- ``application/json-patch+json``: RFC 6902 operations.
"""

import copy

from . import errors

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = (MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH)

# field name -> merge key, for lists merged element-wise by strategic merge patch
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",  # service ports use "port"; handled below
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
# lists of scalars merged as sets
SET_LISTS = {"finalizers"}


def merge_patch(target, patch):
    """RFC 7386 merge patch; returns a new object."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _merge_key_for(name, items):
    key = MERGE_KEYS.get(name)
    if name == "ports" and items and isinstance(items[0], dict):
        if "port" in items[0] and "containerPort" not in items[0]:
            return "port"
    return key


def strategic_merge_patch(target, patch, _field=None):
    """A strategic merge patch (see the module docstring for what is covered)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        out = {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        return out
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            # $retainKeys, $setElementOrder/...: accepted, not needed for our model
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value, key)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = value
    return result


def _merge_list(name, current, patch):
    current = current if isinstance(current, list) else []
    if name in SET_LISTS:
        out = list(current)
        for item in patch:
            if item not in out:
                out.append(item)
        return out
    mkey = _merge_key_for(name, patch or current)
    if not mkey or not all(isinstance(i, dict) for i in patch):
        return [
            i
            for i in copy.deepcopy(patch)
            if not (isinstance(i, dict) and i.get("$patch"))
        ]
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if i.get("$patch") != "replace"]
    out = copy.deepcopy(current)
    for item in patch:
        key_value = item.get(mkey)
        idx = next(
            (
                i
                for i, cur in enumerate(out)
                if isinstance(cur, dict) and cur.get(mkey) == key_value
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(copy.deepcopy(item))
        else:
            out[idx] = strategic_merge_patch(out[idx], item, name)
    return out


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise errors.bad_request(f"the JSON pointer {path!r} does not start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts, op):
    cur = doc
    for part in parts:
        if isinstance(cur, dict):
            if part not in cur:
                raise errors.ApiError(
                    422,
                    "Invalid",
                    f"jsonpatch {op} operation does not apply: doc is missing path",
                )
            cur = cur[part]
        elif isinstance(cur, list):
            try:
                cur = cur[int(part)]
            except (ValueError, IndexError):
                raise errors.ApiError(
                    422,
                    "Invalid",
                    f"jsonpatch {op} operation does not apply: doc is missing path",
                )
        else:
            raise errors.ApiError(
                422,
                "Invalid",
                f"jsonpatch {op} operation does not apply: doc is missing path",
            )
    return cur


def _add(doc, parts, value, op="add"):
    if not parts:
        return copy.deepcopy(value)
    parent = _walk(doc, parts[:-1], op)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        if last == "-":
            parent.append(copy.deepcopy(value))
        else:
            idx = int(last)
            if idx > len(parent):
                raise errors.ApiError(
                    422,
                    "Invalid",
                    "jsonpatch add operation does not apply: index out of bounds",
                )
            parent.insert(idx, copy.deepcopy(value))
    return doc


def _remove(doc, parts, op="remove"):
    parent = _walk(doc, parts[:-1], op)
    last = parts[-1]
    try:
        if isinstance(parent, dict):
            return parent.pop(last)
        return parent.pop(int(last))
    except (KeyError, ValueError, IndexError):
        raise errors.ApiError(
            422,
            "Invalid",
            f"jsonpatch {op} operation does not apply: doc is missing key: {'/' + '/'.join(parts)}",
        )


def json_patch(target, operations):
    """Apply RFC 6902 ``operations`` to a copy of ``target``."""
    if not isinstance(operations, list):
        raise errors.bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise errors.bad_request(f"invalid json patch operation: {op!r}")
        kind = op["op"]
        parts = _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, parts, op.get("value"))
        elif kind == "remove":
            _remove(doc, parts)
        elif kind == "replace":
            _remove(doc, parts, "replace")
            doc = _add(doc, parts, op.get("value"), "replace")
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = copy.deepcopy(_walk(doc, src, kind))
            if kind == "move":
                _remove(doc, src, kind)
            doc = _add(doc, parts, value, kind)
        elif kind == "test":
            if _walk(doc, parts, "test") != op.get("value"):
                raise errors.ApiError(
                    422,
                    "Invalid",
                    f"the server rejected our request due to an error in our request: testing value {op['path']} failed",
                )
        else:
            raise errors.bad_request(f"Unexpected kind: {kind}")
    return doc


def apply_patch(target, patch, content_type):
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype == MERGE_PATCH:
        if not isinstance(patch, dict):
            raise errors.bad_request("merge patch must be a JSON object")
        return merge_patch(target, patch)
    if ctype == STRATEGIC_MERGE_PATCH:
        if not isinstance(patch, dict):
            raise errors.bad_request("strategic merge patch must be a JSON object")
        return strategic_merge_patch(target, patch)
    if ctype == JSON_PATCH:
        return json_patch(target, patch)
    raise errors.unsupported_media_type(content_type)
