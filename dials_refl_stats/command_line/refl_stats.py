"""dials.refl_stats: every statistic of the suite in one pass, and one HTML report."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, replace
from typing import Any

import dials.util
import libtbx.phil

from dials_refl_stats.pipeline.arguments import system_phil, without_input_files
from dials_refl_stats.pipeline.combined import CombinedStatistic, Member
from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.pipeline.execute import RunPartial
from dials_refl_stats.pipeline.phil import INPUT_PHIL, JSON_FORM_PHIL
from dials_refl_stats.pipeline.program import (
    Program,
    Run,
    describe_selection,
    run_program,
)

PROGRAM = "refl_stats"

#: The statistics of the suite (program modules), in report order.
MEMBERS = (
    "per_image_statistics",
    "spot_size_histogram",
    "intensity_per_frame",
    "strong_reflection_positions",
)

help_message = """
Every statistic of dials_refl_stats that the inputs allow, in one pass that reads each
reflection file once: per-image statistics, spot sizes, intensity per frame and strong
reflection positions. Writes refl_stats.json (each statistic's selection and results in
the same form as its own program's JSON, inside the shared envelope) and
refl_stats.html: one self-contained, interactive report that opens offline, with one
section per statistic (plots, tables, summary line, inputs, and the parameters as a
rerunnable phil file). Statistics the inputs cannot support are listed with the reason.

Each statistic keeps its own parameters under its program's name, so one phil file
configures the whole suite, e.g. spot_size_histogram.histogram.n_slots=50 or
per_image_statistics.hit.min_spots=20.

Examples::

  dials.refl_stats integrated.expt integrated.refl

  dials.refl_stats indexed.expt indexed.refl spot_size_histogram.histogram.data_max=Auto

  dials.refl_stats 'ssx/integrated_*.refl' mp.nproc=4 output.prefix=run12
"""


def member_module(name: str):
    return importlib.import_module(f"dials_refl_stats.command_line.{name}")


#: Run-wide scopes and output files: dials.refl_stats has its own.
RUN_WIDE = ("input", "mp")
MEMBER_FILES = ("log", "json", "plot", "json_form")


def member_phil(name: str) -> str:
    """A member program's phil scope, without the run-wide scopes and output files."""
    text = []
    for scope in member_module(name).phil_scope.objects:
        if scope.name in RUN_WIDE:
            continue
        if scope.name == "output":
            kept = [o for o in scope.objects if o.name not in MEMBER_FILES]
            if kept:
                inner = "".join(o.as_str(attributes_level=2) for o in kept)
                text.append(f"output\n{{\n{inner}}}\n")
            continue
        text.append(scope.as_str(attributes_level=2))
    body = "".join(text)
    return f'{name}\n  .help = "Parameters of dials.{name}."\n{{\n{body}}}\n'


phil_scope = libtbx.phil.parse(
    """
output
{
  prefix = refl_stats
    .type = str
    .help = "Output names: <prefix>.json, <prefix>.html and dials.<prefix>.log."
  log = None
    .type = path
    .help = "Log file (default dials.<prefix>.log)."
  json = None
    .type = path
    .help = "JSON file (default <prefix>.json)."
  html = None
    .type = path
    .help = "HTML report (default <prefix>.html). None with prefix=None: no report."
"""
    + JSON_FORM_PHIL
    + "}\n"
    + INPUT_PHIL
    + "".join(member_phil(name) for name in MEMBERS)
)


@dataclass
class MemberRun:
    """One member program and its view of the run."""

    name: str
    program: Program
    run: Run


class ReflStats(Program):
    name = PROGRAM
    wants_experiments = True
    rows_per_image = True  # two of its members (left out when the scans are too long)
    light_experiments = True
    uses_crystals = True
    usage = "dials.refl_stats [options] [integrated.expt] integrated.refl"

    def output_targets(self, params) -> dict[str, str | None]:
        output = params.output
        prefix = output.prefix or PROGRAM
        if any(c in prefix for c in "/\\") and not os.path.isdir(os.path.dirname(prefix) or "."):
            raise Sorry(f"output.prefix={prefix}: directory does not exist")
        return {
            "log": output.log or f"dials.{prefix}.log",
            "json": output.json or f"{prefix}.json",
            "html": output.html or f"{prefix}.html",
        }

    def validate(self, params) -> None:
        self.programs = {}
        for name in MEMBERS:
            program = getattr(member_module(name), "PROGRAM_CLASS")()
            program.validate(getattr(params, name))
            self.programs[name] = program

    def scans_too_long(self, error: Sorry) -> None:
        """Members with a row per image are left out (with the reason); the others run."""
        self.left_out = getattr(self, "left_out", {})
        for name, program in self.programs.items():
            if program.rows_per_image:
                self.left_out[name] = str(error)

    def experiments_known(self, params, experiments) -> None:
        for name, program in self.programs.items():
            program.experiments_known(getattr(params, name), experiments)

    def selection_plan(self, params):
        return self.programs["spot_size_histogram"].selection_plan(params.spot_size_histogram)

    def headers_with_rows(self, params, with_experiments: bool) -> bool:
        """When no member needs a header before the run, the tasks read them with the
        rows (one read of each file); members are then left out after it."""
        return all(
            program.headers_with_rows(getattr(params, name), with_experiments)
            for name, program in self.programs.items()
        )

    def check_file(self, opened, params) -> None:
        """Members that cannot read a file are left out (with the reason), not failed;
        after a run whose tasks read the headers, their results are dropped."""
        self.left_out = getattr(self, "left_out", {})
        for name, program in self.programs.items():
            if name in self.left_out:
                continue
            try:
                program.check_file(opened, getattr(params, name))
            except Sorry as error:
                self.left_out[name] = str(error)
                self._drop(name)

    def _none_computed(self) -> Sorry:
        reasons = "; ".join(f"{k}: {v}" for k, v in self.left_out.items())
        return Sorry(f"no statistic can be computed from these inputs ({reasons})")

    def _drop(self, name: str) -> None:
        """Member ``name`` out of a statistic made before its headers were checked."""
        getattr(self, "members", {}).pop(name, None)
        combined = getattr(self, "combined", None)
        if combined is not None:
            combined.members.pop(name, None)

    def statistic(self, run: Run) -> CombinedStatistic:
        self.left_out = getattr(self, "left_out", {})
        self.members: dict[str, MemberRun] = {}
        statistics = {}
        for name, program in self.programs.items():
            if name in self.left_out:
                continue
            params = getattr(run.params, name)
            member_run = replace(
                run, params=params, plan=program.selection_plan(params), one_pass=True
            )
            try:
                statistics[name] = Member(program.statistic(member_run), member_run.plan)
            except Sorry as error:
                self.left_out[name] = str(error)
                continue
            self.members[name] = MemberRun(name, program, member_run)
        if not statistics:
            raise self._none_computed()
        code = statistics.get("spot_size_histogram") or statistics.get("per_image_statistics")
        self.combined = CombinedStatistic(statistics, code.statistic.shoebox_code if code else None)
        return self.combined

    def finalize(self, finals: dict, run: Run) -> dict[str, tuple[Any, RunPartial]]:
        for name, index in self.combined.missing.items():  # the checks found no reason
            self.left_out.setdefault(name, f"{run.paths[index]}: lacks a column it reads")
            self._drop(name)
        if not finals:
            raise self._none_computed()
        out = {}
        for name, (final, records) in finals.items():
            member = self.members[name]
            # the headers the tasks read (the members' runs were made before them)
            member.run.files, member.run.compact = run.files, run.compact
            member.run.records = records
            out[name] = (member.program.finalize(final, member.run), RunPartial(None, records))
        return out

    def results(self, finals: dict, run: Run) -> dict:
        shared = describe_selection(run, RunPartial(None, run.records))["files"]
        statistics = {}
        for name, (final, reduced) in finals.items():
            member = self.members[name]
            selection = member.program.selection_record(final, member.run, reduced)
            if run.compact and selection["files"] == shared:
                del selection["files"]  # the same column as the top-level selection.files
            statistics[name] = {
                "program": f"dials.{name}",
                "selection": selection,
                "results": member.program.results(final, member.run),
            }
        return {
            "statistics": statistics,
            "not_computed": [
                {"statistic": name, "reason": reason} for name, reason in self.left_out.items()
            ],
        }

    def log_results(self, finals: dict, run: Run) -> None:
        for name, (final, _) in finals.items():
            member = self.members[name]
            member.program.log_results(final, member.run)
            self.logger.info(member.program.summary_line(final, member.run))
        for name, reason in self.left_out.items():
            self.logger.warning("dials.%s not computed: %s", name, reason)

    def summary_line(self, finals: dict, run: Run) -> str:
        computed = ",".join(finals) or "none"
        left_out = ",".join(self.left_out) or "none"
        return f"Statistics: computed={computed} not_computed={left_out}"

    def write_files(self, outputs, finals: dict, run: Run, document: dict) -> None:
        from dials_refl_stats.output import write_json
        from dials_refl_stats.report import not_computed, render_report

        if "json" in outputs.targets:
            write_json(outputs.temporary("json"), document, atomic=False)
        if "html" in outputs.targets:
            documents = [
                member_document(name, document, entry)
                for name, entry in document["results"]["statistics"].items()
            ]
            documents += [
                not_computed(f"dials.{e['statistic']}", e["reason"])
                for e in document["results"]["not_computed"]
            ]
            html = render_report(documents, title=f"DIALS reflection statistics: {run.title}")
            with open(outputs.temporary("html"), "w", encoding="utf-8") as handle:
                handle.write(html)


def member_document(name: str, document: dict, entry: dict) -> dict:
    """Member ``name``'s own document, as ``dials.<name>`` would write it: the suite's
    envelope (its inputs: the same files) around the member's entry, with the member's
    own parameters (:func:`member_parameters`). ``document`` is plain JSON already."""
    return {
        **document,
        "program": f"dials.{name}",
        "parameters": member_parameters(name, document["parameters"]),
        "selection": entry["selection"],
        "results": entry["results"],
    }


#: The scopes of the ``dials.refl_stats`` phil that its members share as they are.
SUITE_SHARED = ("reader", "input", "mp")


def member_parameters(name: str, suite: dict) -> dict:
    """The parameters of member ``name`` as its own program's phil (its ``phil_scope``
    filled from the suite's ``reader``, ``input``, ``mp``, ``output.json_form`` and the
    member's scope), so that ``dials.<name> ... saved.phil`` reruns its statistic. If the
    suite's text cannot be read so, the suite's parameters, naming ``dials.refl_stats``
    (``rerun_program``) as the program that takes them."""
    try:
        return _member_parameters(name, suite["effective_phil"])
    except (RuntimeError, ValueError, KeyError):  # libtbx.phil errors are RuntimeErrors
        return {**suite, "rerun_program": f"dials.{PROGRAM}"}


def _member_parameters(name: str, suite_text: str) -> dict:
    suite = libtbx.phil.parse(suite_text)
    (member,) = [o for o in suite.objects if o.name == name and o.is_scope]
    master = system_phil(member_module(name).phil_scope)
    sources = [o for o in suite.objects if o.name in SUITE_SHARED]
    json_form = suite.get("output.json_form").objects
    if json_form:
        sources.append(libtbx.phil.parse("output {\n%s}\n" % json_form[0].as_str()))
    sources += member.objects
    source = libtbx.phil.parse("".join(o.as_str() for o in sources))
    working, unused = master.fetch(sources=[source], track_unused_definitions=True)
    if unused:
        raise ValueError(f"not parameters of dials.{name}: {[u.path for u in unused]}")
    return {
        "effective_phil": without_input_files(working.as_str()),
        "diff_phil": without_input_files(master.fetch_diff(source=working).as_str()),
    }


@dials.util.show_mail_handle_errors()
def run(args=None, *, phil=phil_scope) -> None:
    run_program(ReflStats(), args, phil, help_message)
