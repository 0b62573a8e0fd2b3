"""The files a consumer adds: the default quilt_summarize.json and the README template."""

from __future__ import annotations

from consumers.extras import SUMMARIZE_MAX_FILES, ReadmeFacts, auto_summarize, previewable


def test_previewable_files_are_listed_top_level_first() -> None:
    keys = [
        ".quiltignore",
        "README.md",
        "metadata.json",
        "quilt_summarize.json",
        "raw/run.fastq",
        "raw/plate.PNG",
        "notes.md",
        "table.tsv",
        "deep/er/values.parquet",
        "results.csv",
        "stats.json",
        "photo.jpeg",
        "._results.csv",
    ]
    assert previewable(keys) == [
        "notes.md",
        "photo.jpeg",
        "results.csv",
        "stats.json",
        "table.tsv",
        "raw/plate.PNG",
        "deep/er/values.parquet",
    ]


def test_the_list_is_capped_and_a_chart_comes_first_when_present() -> None:
    keys = [f"t{i:03}.csv" for i in range(50)] + ["charts/reads.vl.json"]
    summary = auto_summarize(keys, chart="charts/reads.vl.json")
    assert summary[0] == {"path": "charts/reads.vl.json", "title": "reads.vl"}
    assert summary[1:] == [f"t{i:03}.csv" for i in range(SUMMARIZE_MAX_FILES)]
    assert auto_summarize(["a.csv"], chart="missing.vl.json") == ["a.csv"]


def test_the_readme_template_fills_known_placeholders_and_leaves_the_rest() -> None:
    facts = ReadmeFacts("lab/run-1", "s3://b/lab/run-1/", "instrument", "packager", "2024-05-14")
    text = facts.fill("# ${package} on ${date} by ${function}, ${workflow}: {braces} $$5 ${other}")
    assert text == ("# lab/run-1 on 2024-05-14 by packager, instrument: {braces} $5 ${other}")
