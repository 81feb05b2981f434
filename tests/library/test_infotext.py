import pytest
from PIL import Image

from hypernet.errors import HypernetError, HypernetFileError
from hypernet.infotext import (
    format_hypernetworks,
    format_infotext,
    parse_hypernetworks,
    parse_infotext,
    parse_size,
    quote,
    read_png_infotext,
    read_png_text,
    write_png,
)

PARAMS = {
    "Version": "hypernet 0.1.0",  # always written last whatever the dict order
    "Seed": 1234,
    "Steps": 20,
    "Sampler": "Euler a",
    "CFG scale": 7,
    "Size": "512x768",
    "Model hash": "abcdef1234",
    "Model": "v1-5-pruned-emaonly",
    "Batch size": 2,
    "Batch pos": 1,
    "Hypernetworks": [("anime", 0.7), ("style/name", 1.0)],
}


def test_layout_matches_the_webui():
    text = format_infotext("a cat <hypernet:anime:0.7>, sitting", "blurry, lowres", PARAMS)
    assert text == (
        "a cat <hypernet:anime:0.7>, sitting\n"
        "Negative prompt: blurry, lowres\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x768, Model hash: abcdef1234, "
        'Model: v1-5-pruned-emaonly, Batch size: 2, Batch pos: 1, Hypernetworks: "anime: 0.7, style/name: 1", '
        "Version: hypernet 0.1.0"
    )
    # no negative prompt: no such line; None values are left out
    text = format_infotext("p", "", {"Steps": 20, "Sampler": "DDIM", "Schedule type": None, "CFG scale": 7.5, "Seed": 1})
    assert text == "p\nSteps: 20, Sampler: DDIM, CFG scale: 7.5, Seed: 1"


def test_round_trip_keeps_values_and_types():
    prompt = "masterpiece, 1girl <hypernet:anime:0.7>\nsecond line: with colon"
    negative = "bad hands\nworse feet"
    params = dict(PARAMS, **{"Schedule type": "Karras", "Clip skip": 2, "CFG scale": 6.5, "Hypernetworks": "anime: 0.7, style/name: 1"})
    got_prompt, got_negative, got = parse_infotext(format_infotext(prompt, negative, params))
    assert (got_prompt, got_negative) == (prompt, negative)
    assert got == params
    assert type(got["Steps"]) is int and type(got["CFG scale"]) is float and type(got["Seed"]) is int
    assert list(got)[-1] == "Version"
    assert parse_hypernetworks(got["Hypernetworks"]) == [("anime", 0.7), ("style/name", 1.0)]


def test_quoting_of_commas_colons_quotes_and_unicode():
    params = {
        "Steps": 30,
        "Sampler": "DPM++ 2M",
        "Seed": -1,
        "Model": 'my, "best": model',
        "Model hash": "0123456789",  # digits only, still text
        "Note": "ünïcödé 猫, with comma",
        "Padded": "  spaces  ",
        "Flag": True,
        "Ratio": 1e-05,
    }
    text = format_infotext("猫 <hypernet:スタイル:0.5>", None, params)
    assert 'Model: "my, \\"best\\": model"' in text
    assert 'Note: "ünïcödé 猫, with comma"' in text  # not \u-escaped, as the webui writes it
    prompt, negative, got = parse_infotext(text)
    assert prompt == "猫 <hypernet:スタイル:0.5>" and negative == ""
    assert got == params
    assert quote("Euler a") == "Euler a" and quote("a:b") == '"a:b"' and quote('say "hi"') == '"say \\"hi\\""'


def test_parse_a_webui_infotext():
    text = (
        "girl, <hypernet:anime:0.6>\n"
        "Negative prompt: ugly\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 965400086, Size: 512x512, "
        'Model hash: 6ce0161689, Model: v1-5, Denoising strength: 0.7, Lora hashes: "a: 1234, b: 5678", Version: v1.10.1'
    )
    prompt, negative, params = parse_infotext(text)
    assert prompt == "girl, <hypernet:anime:0.6>" and negative == "ugly"
    assert params["Denoising strength"] == 0.7 and params["Lora hashes"] == "a: 1234, b: 5678"
    assert params["Version"] == "v1.10.1" and params["Model hash"] == "6ce0161689"
    assert parse_size(params["Size"]) == (512, 512)


def test_old_hypernet_fields_become_a_tag_as_the_webui_pastes_them():
    text = "a dog\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Hypernet: anime, Hypernet strength: 0.5"
    prompt, _, params = parse_infotext(text)
    assert prompt == "a dog<hypernet:anime:0.5>"
    assert params["Hypernet"] == "anime" and params["Hypernet strength"] == 0.5
    prompt, _, _ = parse_infotext("a dog\nSteps: 20, Sampler: Euler a, Seed: 1, Hypernet: anime, Hypernet hash: 12345678")
    assert prompt == "a dog<hypernet:anime:1.0>"


def test_a_last_line_with_fewer_than_three_fields_is_prompt():
    prompt, negative, params = parse_infotext("a cat\nSteps: 20, Seed: 1")
    assert prompt == "a cat\nSteps: 20, Seed: 1" and negative == "" and params == {}
    assert parse_infotext("") == ("", "", {})


def test_bad_field_names_and_values_are_refused_clearly():
    with pytest.raises(HypernetError, match="field name 'A'"):
        format_infotext("p", "", {"A": 1})
    with pytest.raises(HypernetError, match="WIDTHxHEIGHT"):
        parse_size("512 by 512")
    with pytest.raises(HypernetError, match="not a number"):
        parse_hypernetworks("a: x")
    assert format_hypernetworks({"a": 0.25, "b": 2.0}) == "a: 0.25, b: 2"
    assert format_infotext("p", "", {"Steps": 1, "Sampler": "x", "Size": (640, 448)}).endswith("Size: 640x448")


def _chunks(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, []
    while position < len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        chunks.append((kind, data[position + 8 : position + 8 + length]))
        position += 12 + length
    return chunks


def test_png_text_chunks_round_trip(tmp_path):
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    latin = format_infotext("a café", "", {"Steps": 20, "Sampler": "Euler a", "Seed": 3})
    path = write_png(image, tmp_path / "out" / "latin.png", latin, extra_text={"hypernet": "anime"})
    assert read_png_infotext(path) == latin
    assert read_png_text(path)["hypernet"] == "anime"
    texts = [(kind, body) for kind, body in _chunks(path) if kind in (b"tEXt", b"iTXt")]
    assert (b"tEXt", b"parameters\x00" + latin.encode("latin-1")) in texts
    assert (b"tEXt", b"hypernet\x00anime") in texts

    wide = format_infotext("猫 <hypernet:スタイル:0.5>", "悪い", {"Steps": 20, "Sampler": "Euler a", "Seed": 3})
    path = write_png(image, tmp_path / "wide.png", wide)
    assert read_png_infotext(path) == wide
    assert any(kind == b"iTXt" and body.startswith(b"parameters\x00") for kind, body in _chunks(path))
    with Image.open(path) as reopened:
        assert reopened.getpixel((0, 0)) == (10, 20, 30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "wide.png"]  # no temporaries left


def test_reading_png_without_parameters_and_non_png(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    assert read_png_infotext(plain) is None
    jpeg = tmp_path / "x.jpg"
    Image.new("RGB", (4, 4)).save(jpeg)
    with pytest.raises(HypernetFileError, match="expected PNG"):
        read_png_infotext(jpeg)
    with pytest.raises(HypernetFileError, match="no such file"):
        read_png_infotext(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(HypernetFileError, match="not an image"):
        read_png_infotext(tmp_path / "text.png")
