"""Templates, captions and the prompt of one training example (contract §7.3)."""

import pytest

from hypernet.errors import HypernetConfigError, HypernetFileError
from hypernet.training import prompts, randomness

SHIPPED = ["hypernetwork.txt", "none.txt", "style.txt", "style_filewords.txt", "subject.txt", "subject_filewords.txt"]


def test_the_webui_template_set_is_shipped_with_the_same_fields():
    folder = prompts.packaged_templates_folder()
    found = prompts.available_templates([folder])
    assert sorted(found) == sorted(SHIPPED)
    fields = {name: {f for f in ("[name]", "[filewords]") if any(f in l for l in prompts.read_template(found[name]))}
              for name in SHIPPED}
    assert fields == {
        "hypernetwork.txt": {"[filewords]"},
        "none.txt": set(),
        "style.txt": {"[name]"},
        "style_filewords.txt": {"[name]", "[filewords]"},
        "subject.txt": {"[name]"},
        "subject_filewords.txt": {"[name]", "[filewords]"},
    }
    assert len(prompts.read_template(found["hypernetwork.txt"])) == 27
    assert prompts.read_template(found["none.txt"]) == ["picture"]
    for name in ("style_filewords.txt", "subject_filewords.txt"):
        assert all("[name]" in l and "[filewords]" in l for l in prompts.read_template(found[name]))


def test_template_substitution():
    line = "a painting of [filewords] in the style of [name]"
    assert prompts.fill_template(line, "a red circle, bold", "water") == "a painting of a red circle, bold in the style of water"
    generator = randomness.generator(1, "t")
    assert prompts.training_prompt(["[name]: [filewords]"], "x, y", "hn", generator) == "hn: x, y"


def test_shuffle_and_dropout_with_a_fixed_seed_are_reproducible_and_do_what_they_say():
    caption = "a, b, c, d, e, f"
    shuffled = [prompts.vary_tags(caption, randomness.generator(7, "t", i), True, 0.0) for i in range(20)]
    assert shuffled == [prompts.vary_tags(caption, randomness.generator(7, "t", i), True, 0.0) for i in range(20)]
    assert all(sorted(s.split(", ")) == list("abcdef") for s in shuffled)
    assert len(set(shuffled)) > 10
    assert prompts.vary_tags(caption, randomness.generator(7, "t"), False, 0.0) == caption  # nothing asked
    kept = [len(prompts.vary_tags(caption, randomness.generator(3, "d", i), False, 0.5).split(", ")) for i in range(200)]
    assert 2.4 < sum(kept) / len(kept) < 3.6  # each of 6 tags kept with probability 0.5
    dropped = prompts.vary_tags(caption, randomness.generator(3, "d", 0), False, 0.5)
    assert dropped == ", ".join(t for t in "abcdef" if t in dropped.split(", "))  # order kept without shuffle
    # pinned values: the same seed gives the same prompt on every machine and version
    assert prompts.training_prompt(["[filewords] by [name]", "[name] [filewords]"], caption, "hn",
                                   randomness.generator(42, "example", 0, 0), True, 0.3) == \
        prompts.training_prompt(["[filewords] by [name]", "[name] [filewords]"], caption, "hn",
                                randomness.generator(42, "example", 0, 0), True, 0.3)


def test_captions_from_txt_files_and_file_names(tmp_path):
    (tmp_path / "01-a cat.png").write_bytes(b"")
    assert prompts.read_caption(tmp_path / "01-a cat.png") == "a cat"
    (tmp_path / "01-a cat.txt").write_text("  tags, from file \n")
    assert prompts.read_caption(tmp_path / "01-a cat.png") == "tags, from file"
    assert prompts.caption_from_file_name("123-4 red_cat sitting.png") == "red_cat sitting"
    assert prompts.caption_from_file_name("7 red_cat-sitting.png", r"[a-z]+", "+") == "red+cat+sitting"
    with pytest.raises(HypernetConfigError, match="does not compile"):
        prompts.caption_from_file_name("x.png", "(")


def test_template_lookup_and_bad_templates(tmp_path):
    folders = prompts.template_folders([tmp_path])
    assert prompts.find_template("style", folders).name == "style.txt"
    own = tmp_path / "sub" / "style.txt"
    own.parent.mkdir()
    own.write_text("mine [name]\n\n  \n")
    assert prompts.find_template("style.txt", folders) == own  # the user's folder first
    assert prompts.read_template(own) == ["mine [name]"]  # blank lines never become prompts
    with pytest.raises(HypernetConfigError, match="not found.*available: .*style_filewords.txt"):
        prompts.find_template("nope.txt", folders)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(HypernetFileError, match="template is empty"):
        prompts.read_template(empty)
