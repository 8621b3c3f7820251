"""Drive a running Label Studio server through its SDK, as two annotators would.

Run with the Python of the environment that holds ``label-studio-sdk`` (the Label Studio
venv, see docs/annotate.md); ``tests/test_annotate_server.py`` does. It reads a plan::

    {"url": ..., "tokens": [tok1, tok2], "label_config": PATH, "tasks": PATH,
     "images_dir": PATH (or null), "export": PATH,
     "annotations": [{sample id: result list or null (= skip)}, ... one per token]}

creates a project from ``annotate export``'s files, imports the tasks, lets annotator i
submit ``annotations[i]`` (null = the skip button: a cancelled annotation), downloads
every task's image through the server, writes the project's JSON export to ``export``,
and prints a JSON summary on stdout.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import httpx
from label_studio_sdk import LabelStudio


def main(plan_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    url, tokens = plan["url"], plan["tokens"]
    clients = [LabelStudio(base_url=url, api_key=t) for t in tokens]
    owner = clients[0]
    project = owner.projects.create(title="ptychobench round trip",
                                    label_config=Path(plan["label_config"]).read_text())
    if plan.get("images_dir"):
        owner.import_storage.local.create(project=project.id, path=plan["images_dir"], use_blob_urls=False,
                                          title="annotate export images")
    tasks = json.loads(Path(plan["tasks"]).read_text())
    owner.projects.import_tasks(id=project.id, request=tasks, return_task_ids=True)
    by_sample = {t.data["ptychobench_id"]: t for t in owner.tasks.list(project=project.id)}
    submitted = 0
    for client, todo in zip(clients, plan["annotations"]):
        for sid, result in todo.items():
            if result is None:
                client.annotations.create(id=by_sample[sid].id, result=[], was_cancelled=True)
            else:
                client.annotations.create(id=by_sample[sid].id, result=result)
            submitted += 1
    images = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Token {tokens[1]}"}) as http:
        for sid, t in by_sample.items():
            if "image" in t.data:
                r = http.get(t.data["image"])
                r.raise_for_status()
                images[sid] = hashlib.sha256(r.content).hexdigest()
    export = b"".join(owner.projects.exports.download_sync(project.id, export_type="JSON", download_all_tasks=True))
    Path(plan["export"]).write_bytes(export)
    users = [c.users.whoami() for c in clients]
    print(json.dumps({"project": project.id, "tasks": len(by_sample), "submitted": submitted,
                      "image_sha256": images, "users": [{"id": u.id, "email": u.email} for u in users]}))


if __name__ == "__main__":
    main(sys.argv[1])
