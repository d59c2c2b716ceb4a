"""Keeps the Inputs and Outputs tables of terraform/README.md and each module's README.md in step
with variables.tf and outputs.tf, between <!-- BEGIN_TF_DOCS --> and <!-- END_TF_DOCS --> (the
terraform-docs markers; terraform-docs itself is not installable from the registries used here).

    python3 docs.py           # rewrites the tables
    python3 docs.py --check   # fails, naming the READMEs, if a table is out of date

Reads HCL with python-hcl2, which checkov brings into .venv.
"""

import json
import pathlib
import re
import sys

import hcl2

TERRAFORM = pathlib.Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- BEGIN_TF_DOCS -->", "<!-- END_TF_DOCS -->"


def expression(value):
    """hcl2 wraps expressions as "${...}"; documentation shows them bare."""
    return re.sub(r"^\$\{(.*)\}$", r"\1", value, flags=re.S) if isinstance(value, str) else value


def literal(value):
    if isinstance(value, str):
        return json.dumps(expression(value)) if not value.startswith("${") else expression(value)
    return json.dumps(value)


def cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def blocks(path, kind):
    if not path.exists():
        return []
    with path.open() as source:
        return [(name, body) for block in hcl2.load(source).get(kind, []) for name, body in block.items()]


def tables(module):
    lines = ["## Inputs", "", "| Name | Description | Type | Default | Required |", "| --- | --- | --- | --- | :---: |"]
    for name, body in blocks(module / "variables.tf", "variable"):
        has_default = "default" in body
        default = f"`{cell(literal(body['default'][0]))}`" if has_default else "n/a"
        kind = cell(expression(body["type"][0]))
        lines.append(f"| `{name}` | {cell(body['description'][0])} | `{kind}` | {default} | {'no' if has_default else 'yes'} |")
    lines += ["", "## Outputs", "", "| Name | Description |", "| --- | --- |"]
    for name, body in blocks(module / "outputs.tf", "output"):
        lines.append(f"| `{name}` | {cell(body['description'][0])} |")
    return "\n".join(lines)


def main(argv):
    check = argv == ["--check"]
    stale = []
    for module in [TERRAFORM, *sorted((TERRAFORM / "modules").iterdir())]:
        readme = module / "README.md"
        text = readme.read_text() if readme.exists() else ""
        if BEGIN not in text or END not in text:
            stale.append(f"{readme} (no {BEGIN} ... {END} section)")
            continue
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        updated = f"{head}{BEGIN}\n{tables(module)}\n{END}{tail}"
        if updated != text:
            stale.append(str(readme))
            if not check:
                readme.write_text(updated)
    if check and stale:
        print("Inputs/Outputs tables out of date (run python3 terraform/test/docs.py):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
