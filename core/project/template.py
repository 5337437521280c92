"""project.yaml as text: the commented template new projects start from, and edits of one
top-level key that keep the person's comments and layout."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from core.config import CONFIG_FILE


def _find_template() -> Path:
    """projects_template/ sits beside core/ in a checkout (and in the PyInstaller folder);
    a wheel installs it under <prefix>/share/dfine-studio/ (pyproject data-files)."""
    candidates = [Path(__file__).resolve().parents[2] / "projects_template" / CONFIG_FILE,
                  Path(sys.prefix) / "share" / "dfine-studio" / "projects_template" / CONFIG_FILE]
    bundle = getattr(sys, "_MEIPASS", None)  # set by PyInstaller
    if bundle:
        candidates.insert(0, Path(bundle) / "projects_template" / CONFIG_FILE)
    return next((c for c in candidates if c.exists()), candidates[0])


TEMPLATE = _find_template()


def set_top_level_value(text: str, key: str, value_text: str) -> str:
    """Replace the value of a top-level key in YAML text, keeping every comment and other line."""
    node = yaml.compose(text)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == key:
                start, end = v.start_mark.index, v.end_mark.index
                if isinstance(v, (yaml.SequenceNode, yaml.MappingNode)) and not v.flow_style:
                    # block collection: replace through its last item; comments after it stay
                    last = v.value[-1][1] if isinstance(v, yaml.MappingNode) else v.value[-1]
                    end = last.end_mark.index
                    return text[: k.end_mark.index] + ": " + value_text + text[end:]
                return text[:start] + value_text + text[end:]
    sep = "" if text.endswith("\n") or not text else "\n"
    return f"{text}{sep}{key}: {value_text}\n"


def set_section_value(text: str, section: str, key: str, value_text: str) -> str:
    """Replace ``section.key``'s scalar value in YAML text (a block mapping ``section:`` with
    2-space keys, as the template has), keeping every comment and other line; a key the section
    lacks is added as its last line, a missing section at the end."""
    node = yaml.compose(text)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value != section or not isinstance(v, yaml.MappingNode) or v.flow_style:
                continue
            for kk, vv in v.value:
                if kk.value == key:
                    if not isinstance(vv, yaml.ScalarNode):
                        raise ValueError(f"{section}.{key} is not a single value")
                    return text[:vv.start_mark.index] + value_text + text[vv.end_mark.index:]
            end = v.value[-1][1].end_mark.index if v.value else k.end_mark.index
            eol = text.find("\n", end)
            eol = len(text) if eol < 0 else eol
            return text[:eol] + f"\n  {key}: {value_text}" + text[eol:]
    sep = "" if text.endswith("\n") or not text else "\n"
    return f"{text}{sep}{section}:\n  {key}: {value_text}\n"


def _flow_scalar(v: str) -> str:
    return yaml.safe_dump(v, default_flow_style=True, allow_unicode=True).strip().removesuffix("...").strip()


def _flow_list(items: list[str]) -> str:
    return "[" + ", ".join(_flow_scalar(str(x)) for x in items) + "]"
