"""The Label Studio labeling config of each task, and reading its choices back.

One multi-choice ``<Choices>`` control over the task's fixed label space, so what an
expert can tick is exactly what the dataset can hold. Parameter options are shown with
their letter and text ("G. Enable position correction") but stored by letter through
Label Studio's ``alias`` attribute, so an export carries the dataset's own labels.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ..tasks import PARAM_OPTIONS, Task, get_task
from ..tasks import label_key as _key
from .errors import AnnotateError

#: name of the ``<Choices>`` control (the ``from_name`` of results) per task
CONTROL = {"artifacts": "artifacts", "params": "params"}
#: name of the object tag the choices refer to (the ``to_name`` of results) per task
OBJECT = {"artifacts": "image", "params": "text"}
#: what the expert is asked (a person's wording; the model's prompt lives in tasks.py)
HEADER = {
    "artifacts": "The phase of a ptychographic reconstruction. Tick every artifact it shows "
    "(or 'No obvious artifacts').",
    "params": "A reconstruction, described. Tick every change to the reconstruction parameters you recommend.",
}
#: the task-data field that object shows
DATA_FIELD = {"artifacts": "image", "params": "text"}


def task_named(name: str, where: str) -> Task:
    """The task a user or a file names, or one clear error saying where the bad name came from."""
    try:
        return get_task(name)
    except ValueError as e:
        raise AnnotateError(f"{where}: {e}") from None


def choice_text(task: Task, label: str) -> str:
    """What the expert reads for a label."""
    return f"{label}. {PARAM_OPTIONS[label]}" if task.name == "params" else label


def label_config(task_name: str) -> str:
    """The labeling-config XML of a task (built with ElementTree, so it is always valid)."""
    task = get_task(task_name)
    view = ET.Element("View")
    header = ET.SubElement(view, "Header")
    header.set("value", HEADER[task.name])
    obj = ET.SubElement(view, "Image" if task.modality == "image" else "Text")
    obj.set("name", OBJECT[task.name])
    obj.set("value", f"${DATA_FIELD[task.name]}")
    if task.modality == "image":
        obj.set("zoom", "true")
    choices = ET.SubElement(view, "Choices")
    for key, value in (
        ("name", CONTROL[task.name]),
        ("toName", OBJECT[task.name]),
        ("choice", "multiple"),
        ("showInline", "false"),
        ("required", "true"),
    ):
        choices.set(key, value)
    for label in task.labels:
        c = ET.SubElement(choices, "Choice")
        c.set("value", choice_text(task, label))
        if task.name == "params":
            c.set("alias", label)  # the result stores the letter, the dataset's label
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def canonical_label(task: Task, value: str) -> str | None:
    """The task's label a stored choice means, or None when it names none.

    Accepts the label itself and, for parameters, "G", "G. Enable position correction" or
    the option text alone (an export of a project whose config had no ``alias``).
    """
    value = str(value).strip()
    if value in task.labels:
        return value
    key = _key(value)
    if task.name == "params":
        for letter, text in PARAM_OPTIONS.items():
            if key in (_key(letter), _key(text), _key(f"{letter}. {text}")):
                return letter
        return None
    return next((label for label in task.labels if _key(label) == key), None)


def results_choices(results: list, task: Task) -> list[str]:
    """Every choice value in an annotation's ``result`` list that belongs to the task.

    Results of other controls (a free-text comment, a rating) are not labels; they are
    ignored. A project exported from a config with another control name still counts,
    as long as it has a single ``choices`` control.
    """
    values: list[str] = []
    for item in results or []:
        if not isinstance(item, dict) or item.get("type") != "choices":
            continue
        if item.get("from_name") not in (CONTROL[task.name], None) and _other_controls(results, task):
            continue
        values.extend(str(v) for v in (item.get("value") or {}).get("choices") or [])
    return values


def _other_controls(results: list, task: Task) -> bool:
    """True when the results also hold this task's own control (so others are extras)."""
    return any(isinstance(r, dict) and r.get("from_name") == CONTROL[task.name] for r in results)


def choices_result(task_name: str, labels) -> list[dict]:
    """A ``result`` list (pre-annotation or annotation) ticking ``labels``."""
    task = get_task(task_name)
    chosen = [label for label in task.labels if label in set(labels)]
    return [
        {
            "from_name": CONTROL[task.name],
            "to_name": OBJECT[task.name],
            "type": "choices",
            "value": {"choices": chosen},
        }
    ]
