"""Drive a running Label Studio server through its SDK, as two annotators would.

Run with the Python of the environment that holds ``label-studio-sdk`` (the Label Studio
venv, see docs/annotate.md); ``tests/test_annotate_server.py`` does. It reads a plan::

    {"url": ..., "tokens": [tok1, tok2],
     "projects": [{"label_config": PATH, "tasks": PATH, "images_dir": PATH or null,
                   "export": PATH, "export_with_emails": PATH (optional),
                   "annotations": [{sample id: result list or null (= skip)}, ... one per token]}]}

and for each project: creates it from ``annotate export``'s files (Label Studio validates
the labeling config), connects the images folder as local storage, imports the tasks with
their pre-annotations, lets annotator i submit ``annotations[i]`` (null = the Skip button:
a cancelled annotation), downloads every task's image through the server, reads back the
pre-annotations' model versions, and writes the project's JSON export to ``export`` (and,
when asked, a snapshot export whose annotations name their annotator in full to
``export_with_emails``).
Prints a JSON summary on stdout.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import httpx
from label_studio_sdk import LabelStudio


def run_project(url: str, tokens: list[str], clients: list[LabelStudio], spec: dict) -> dict:
    owner = clients[0]
    project = owner.projects.create(
        title=Path(spec["tasks"]).parent.name, label_config=Path(spec["label_config"]).read_text()
    )
    if spec.get("images_dir"):
        owner.import_storage.local.create(
            project=project.id, path=spec["images_dir"], use_blob_urls=False, title="annotate export images"
        )
    tasks = json.loads(Path(spec["tasks"]).read_text())
    owner.projects.import_tasks(id=project.id, request=tasks, return_task_ids=True)
    by_sample = {t.data["ptychobench_id"]: t for t in owner.tasks.list(project=project.id)}
    for client, todo in zip(clients, spec["annotations"]):
        for sid, result in todo.items():
            if result is None:
                client.annotations.create(id=by_sample[sid].id, result=[], was_cancelled=True)
            else:
                client.annotations.create(id=by_sample[sid].id, result=result)
    images, predictions = {}, {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Token {tokens[-1]}"}) as http:
        for sid, t in by_sample.items():
            predictions[sid] = sorted(p.model_version or "" for p in owner.predictions.list(task=t.id))
            if "image" in t.data:
                r = http.get(t.data["image"])
                r.raise_for_status()
                images[sid] = hashlib.sha256(r.content).hexdigest()
    export = b"".join(owner.projects.exports.download_sync(project.id, export_type="JSON", download_all_tasks=True))
    Path(spec["export"]).write_bytes(export)
    if spec.get("export_with_emails"):  # a snapshot export with the annotators expanded (id, e-mail, names)
        snap = owner.projects.exports.create(
            project.id, title="with e-mails", serialization_options={"annotations__completed_by": {"only_id": False}}
        )
        for _ in range(120):
            if owner.projects.exports.get(project.id, snap.id).status == "completed":
                break
            time.sleep(0.5)
        data = b"".join(owner.projects.exports.download(project.id, snap.id, export_type="JSON"))
        Path(spec["export_with_emails"]).write_bytes(data)
    return {"project": project.id, "tasks": len(by_sample), "image_sha256": images, "predictions": predictions}


def main(plan_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    clients = [LabelStudio(base_url=plan["url"], api_key=t) for t in plan["tokens"]]
    users = [c.users.whoami() for c in clients]
    projects = [run_project(plan["url"], plan["tokens"], clients, spec) for spec in plan["projects"]]
    print(json.dumps({"users": [{"id": u.id, "email": u.email} for u in users], "projects": projects}))


if __name__ == "__main__":
    main(sys.argv[1])
