"""SDXL: the webui's two-encoder conditioning, the pooled vector and size conditioning in
our denoising loop (bit-identical to `StableDiffusionXLPipeline` for a plain batch), and
hypernetworks of the SDXL kind (context and self-attention widths; here 48, 32, 64 on a
tiny random-weight SDXL-architecture pipeline built in `tiny_models`)."""

import pytest
import torch

import hypernet
from hypernet import attention
from hypernet.generation import Generator, ModelInfo, Request
from hypernet.library import Library
from hypernet.network import Hypernetwork
from hypernet.prompt.sdxl import DualConditioning, SDXLPromptEncoder, time_ids
from hypernet.samplers import make_scheduler
from hypernet.sampling import Guidance, ImageJob, denoise
from tiny_models import SDXL_CONTEXT, SDXL_SELF_SIZES, SDXL_TEXT_WIDTHS, tiny_sdxl_pipeline

SIZE = 32


@pytest.fixture(scope="module")
def xl():
    return tiny_sdxl_pipeline()


@pytest.fixture()
def encoder(xl):
    return SDXLPromptEncoder(xl.tokenizer, xl.text_encoder, xl.tokenizer_2, xl.text_encoder_2)


def noise_for(pipe, seed):
    shape = (pipe.unet.config.in_channels, SIZE // pipe.vae_scale_factor, SIZE // pipe.vae_scale_factor)
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))


def test_conditioning_is_both_encoders_penultimate_layers_and_the_pooled_output(xl, encoder):
    with torch.no_grad():
        ours = encoder.encode("a red circle")
        embeds, _, pooled, _ = xl.encode_prompt("a red circle", do_classifier_free_guidance=False)
    assert ours.context.shape == (1, 77, SDXL_CONTEXT) and ours.pooled.shape == (1, SDXL_TEXT_WIDTHS[1])
    assert torch.equal(ours.context, embeds) and torch.equal(ours.pooled, pooled)


def test_chunks_break_and_emphasis_apply_to_both_encoders(encoder):
    with torch.no_grad():
        long = encoder.encode("a red circle BREAK a blue square")
        weighted = encoder.encode("a (red:1.3) circle")
        plain = encoder.encode("a red circle")
        first_chunk = encoder.encode("a red circle")
    assert long.context.shape[1] == 154
    assert torch.equal(long.context[:, :77], first_chunk.context)  # each chunk on its own
    assert torch.equal(long.pooled, first_chunk.pooled)  # the pooled vector: the first chunk's
    for half in (slice(0, SDXL_TEXT_WIDTHS[0]), slice(SDXL_TEXT_WIDTHS[0], SDXL_CONTEXT)):
        assert not torch.equal(weighted.context[..., half], plain.context[..., half])
    assert torch.equal(weighted.pooled, plain.pooled)  # unweighted, as in the webui


def test_an_empty_negative_prompt_is_zeros_and_clip_skip_reaches_clip_l_only(xl, encoder):
    [(_, zeros)] = encoder.negative_conditioning("", 4)
    assert not zeros.context.any() and not zeros.pooled.any() and zeros.context.shape == (77, SDXL_CONTEXT)
    [(_, text)] = encoder.negative_conditioning("blurry", 4)
    assert text.context.any()
    skip3 = SDXLPromptEncoder(xl.tokenizer, xl.text_encoder, xl.tokenizer_2, xl.text_encoder_2, clip_skip=3)
    skip2 = SDXLPromptEncoder(xl.tokenizer, xl.text_encoder, xl.tokenizer_2, xl.text_encoder_2, clip_skip=2)
    with torch.no_grad():
        base, two, three = encoder.encode("a cat"), skip2.encode("a cat"), skip3.encode("a cat")
    width = SDXL_TEXT_WIDTHS[0]
    assert torch.equal(base.context, two.context)  # the webui's sdxl_clip_l_skip: 2 is the default layer
    assert not torch.equal(base.context[..., :width], three.context[..., :width])
    assert torch.equal(base.context[..., width:], three.context[..., width:]) and torch.equal(base.pooled, three.pooled)


def stock_latents(xl, cond, uncond, noise, seeds, steps, sampler, scale=7.0):
    original = xl.scheduler
    xl.scheduler = make_scheduler(sampler, original.config)
    count = len(seeds)
    try:
        with torch.no_grad():
            return xl(prompt_embeds=cond.context[None].repeat(count, 1, 1),
                      pooled_prompt_embeds=cond.pooled[None].repeat(count, 1),
                      negative_prompt_embeds=uncond.context[None].repeat(count, 1, 1),
                      negative_pooled_prompt_embeds=uncond.pooled[None].repeat(count, 1),
                      num_inference_steps=steps, guidance_scale=scale, height=SIZE, width=SIZE, latents=noise,
                      generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
                      output_type="latent").images
    finally:
        xl.scheduler = original


@pytest.mark.parametrize("sampler, negative", [("Euler a", ""), ("DPM++ 2M Karras", "blurry")])
def test_plain_batch_is_bit_identical_to_the_diffusers_sdxl_pipeline(xl, encoder, sampler, negative):
    steps, seeds = 3, [3, 4]
    with torch.no_grad():
        cond = encoder.conditioning("a red circle", steps)
        uncond = encoder.negative_conditioning(negative, steps)
        empty = encoder.empty()
    jobs = [ImageJob(noise_for(xl, seed), torch.Generator("cpu").manual_seed(seed), [(1.0, cond)], uncond,
                     time_ids=time_ids(SIZE, SIZE)) for seed in seeds]
    ours, _ = denoise(xl.unet, make_scheduler(sampler, xl.scheduler.config), jobs, steps, Guidance(7.0), empty)
    stock = stock_latents(xl, cond[0][1], uncond[0][1], torch.stack([job.noise for job in jobs]), seeds, steps, sampler)
    assert torch.equal(ours, stock)


def sdxl_network(sizes, seed=1, activation="linear"):
    return Hypernetwork.create(sizes=list(sizes), activation=activation, weight_init="XavierNormal",
                               generator_seed=seed, name=f"xl{seed}")


@pytest.mark.parametrize("fold", [True, False])
def test_multiplier_zero_is_bit_identical_to_plain_diffusers(xl, encoder, fold):
    steps, seeds = 2, [5]
    with torch.no_grad():
        cond, uncond, empty = encoder.conditioning("a red circle", steps), encoder.negative_conditioning("", steps), encoder.empty()
    network = sdxl_network((SDXL_CONTEXT, *SDXL_SELF_SIZES))
    job = ImageJob(noise_for(xl, 5), torch.Generator("cpu").manual_seed(5), [(1.0, cond)], uncond,
                   chain=((network, 0.0),), time_ids=time_ids(SIZE, SIZE))
    try:
        ours, _ = denoise(xl.unet, make_scheduler("Euler", xl.scheduler.config), [job], steps, Guidance(7.0), empty,
                          fold=fold)
    finally:
        attention.uninstall(xl.unet)
    stock = stock_latents(xl, cond[0][1], uncond[0][1], job.noise[None], seeds, steps, "Euler")
    assert torch.equal(ours, stock)


def attention_inputs(unet, run):
    """{attention module name: (tensor entering the layer as k/v input, tensor reaching to_k,
    tensor reaching to_v)} over one call of `run`."""
    seen, handles = {}, []
    for name, module in unet.named_modules():
        if not hasattr(module, "to_k") or not isinstance(module.to_k, torch.nn.Linear):
            continue

        def before(module, args, kwargs, name=name):
            context = kwargs.get("encoder_hidden_states")
            seen[name] = [args[0] if context is None else context]
        handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(module.to_k.register_forward_pre_hook(lambda m, args, name=name: seen[name].append(args[0])))
        handles.append(module.to_v.register_forward_pre_hook(lambda m, args, name=name: seen[name].append(args[0])))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return seen


def test_multiplier_one_changes_only_the_attention_inputs_of_the_files_widths(xl, encoder):
    with torch.no_grad():
        [(_, cond)] = encoder.conditioning("a red circle", 1)
    latents = noise_for(xl, 1)[None]
    added = {"text_embeds": cond.pooled[None], "time_ids": time_ids(SIZE, SIZE)[None]}
    network = sdxl_network((SDXL_CONTEXT, SDXL_SELF_SIZES[1]), activation="tanh")  # 48 and 64; not 32

    def run():
        with torch.no_grad():
            xl.unet(latents, 500, encoder_hidden_states=cond.context[None], added_cond_kwargs=added)

    try:
        with attention.activate(xl.unet, [(network, 1.0)], fold=False):
            seen = attention_inputs(xl.unet, run)
    finally:
        attention.uninstall(xl.unet)
    widths = {}
    for name, (entering, key, value) in seen.items():
        width = entering.shape[-1]
        changed = not torch.equal(entering, key) or not torch.equal(entering, value)
        widths.setdefault(width, set()).add(changed)
    assert widths == {SDXL_SELF_SIZES[0]: {False}, SDXL_SELF_SIZES[1]: {True}, SDXL_CONTEXT: {True}}


@pytest.fixture()
def generator(xl, tmp_path):
    root = tmp_path / "hypernetworks"
    hypernet.save(sdxl_network((SDXL_CONTEXT, *SDXL_SELF_SIZES)), root / "xl.pt")
    hypernet.save(sdxl_network((SDXL_CONTEXT, *SDXL_SELF_SIZES), seed=2, activation="tanh"), root / "tanhxl.pt")
    yield Generator(xl, library=Library(root), model=ModelInfo(name="tiny-xl"))
    attention.uninstall(xl.unet)


def generate(generator, prompt, negative="", **more):
    request = Request(prompt=prompt, negative_prompt=negative, steps=2, seed=7, width=SIZE, height=SIZE,
                      sampler="Euler", **more)
    return generator.generate(request, progress=False)


def test_the_generator_on_sdxl_tags_and_multipliers(generator):
    plain = generate(generator, "a red circle")[0]
    assert plain.image.size == (SIZE, SIZE) and generator.native_size == 32
    zero = generate(generator, "a red circle <hypernet:xl:0>")[0]
    assert zero.image.tobytes() == plain.image.tobytes()
    one = generate(generator, "a red circle <hypernet:xl:1>")[0]
    chained = generate(generator, "a red circle <hypernet:xl:1> <hypernet:tanhxl:0.5>")[0]
    assert len({plain.image.tobytes(), one.image.tobytes(), chained.image.tobytes()}) == 3
    assert 'Hypernetworks: "xl: 1"' in one.infotext
    assert generator.warnings == []


def test_sdxl_prompts_with_and_break_editing_and_a_negative_run_and_differ(generator):
    base = generate(generator, "a red circle", "blurry")[0].image.tobytes()
    variants = ["a red circle AND a blue square:0.5", "a red circle BREAK on grass", "a [red:blue:0.2] circle",
                "a (red:1.4) circle"]
    images = [generate(generator, text, "blurry")[0].image.tobytes() for text in variants]
    assert [image == base for image in images] == [False] * len(variants), variants
    assert len(set(images)) == len(variants)


def test_every_row_gets_its_own_pooled_vector_and_each_image_its_size(xl, encoder):
    """Two images of one batch with different prompts and sizes conditioning each equal
    their own single runs: the pooled rows and time_ids go with their image."""
    steps = 2
    with torch.no_grad():
        negative, empty = encoder.negative_conditioning("", steps), encoder.empty()
        prompts = [encoder.composable_conditioning(text, steps) for text in ("a red circle", "a cat AND a dog:0.5")]
    sizes = [time_ids(SIZE, SIZE), time_ids(SIZE, SIZE, crop_top=16, original=(64, 48))]
    jobs = [ImageJob(noise_for(xl, seed), torch.Generator("cpu").manual_seed(seed), parts, negative, time_ids=ids)
            for seed, parts, ids in zip((1, 2), prompts, sizes)]
    scheduler = make_scheduler("Euler", xl.scheduler.config)
    together, _ = denoise(xl.unet, scheduler, jobs, steps, Guidance(5.0), empty)
    for index, job in enumerate(jobs):
        job.generator.manual_seed(index + 1)
        alone, _ = denoise(xl.unet, make_scheduler("Euler", xl.scheduler.config), [job], steps, Guidance(5.0), empty)
        torch.testing.assert_close(together[index], alone[0], rtol=0, atol=1e-4)
    swapped = [ImageJob(job.noise, job.generator, job.parts, job.negative, time_ids=ids)
               for job, ids in zip(jobs, reversed(sizes))]
    other, _ = denoise(xl.unet, make_scheduler("Euler", xl.scheduler.config), swapped, steps, Guidance(5.0), empty)
    assert not torch.allclose(other, together)
    assert isinstance(empty, DualConditioning)


def test_an_fp16_sdxl_vae_decodes_in_fp32_and_stays_fp16(xl):
    from hypernet.latents import decode

    calls = []
    original = xl.vae.decode

    def decode_spy(latents, *args, **kwargs):
        calls.append((latents.dtype, next(xl.vae.parameters()).dtype))
        return original(latents, *args, **kwargs)

    torch.nn.Module.to(xl.vae, dtype=torch.float16)
    xl.vae.decode = decode_spy
    try:
        images = decode(xl, torch.zeros(1, 4, 16, 16, dtype=torch.float16))
        assert calls == [(torch.float32, torch.float32)] and xl.vae.dtype == torch.float16
        assert images[0].size == (SIZE, SIZE)
    finally:
        del xl.vae.decode
        torch.nn.Module.to(xl.vae, dtype=torch.float32)


def test_the_command_line_generates_from_an_sdxl_diffusers_folder(xl, tmp_path, capsys):
    from hypernet.cli import main
    from hypernet.infotext import read_png_infotext

    xl.register_to_config(tokenizer=("transformers", "CLIPTokenizer"), tokenizer_2=("transformers", "CLIPTokenizer"))
    xl.save_pretrained(tmp_path / "tiny-xl")
    library = tmp_path / "library"
    hypernet.save(sdxl_network((SDXL_CONTEXT, *SDXL_SELF_SIZES)), library / "xl.pt")
    hypernet.save(Hypernetwork.create(sizes=[768, 320], name="sd1"), library / "sd1.pt")
    code = main(["generate", "a red circle <hypernet:xl:1> <hypernet:sd1:1>", "--model", str(tmp_path / "tiny-xl"),
                 "--hypernet-dir", str(library), "--size", "32x32", "--steps", "2", "--seed", "3", "--quiet",
                 "--device", "cpu", "--out", str(tmp_path / "out")])
    assert code == 0
    [written] = sorted((tmp_path / "out").rglob("*.png"))
    assert 'Hypernetworks: "xl: 1, sd1: 1"' in read_png_infotext(written) and "Model: tiny-xl" in read_png_infotext(written)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "'sd1' changes nothing on this model" in warnings[0]


def test_lora_tags_apply_on_sdxl_beside_a_hypernetwork(tmp_path):
    """A kohya-layout LoRA through diffusers' SDXL LoRA loader (own pipeline: peft changes it)."""
    from safetensors.torch import save_file

    pipe = tiny_sdxl_pipeline()
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for name, module in pipe.unet.named_modules():  # kohya/webui layout, every attention projection
        if name.endswith((".to_q", ".to_k", ".to_v", ".to_out.0")) and ".attn" in name:
            key = "lora_unet_" + name.replace(".", "_")
            tensors[f"{key}.lora_down.weight"] = torch.randn(4, module.in_features, generator=generator) * 0.5
            tensors[f"{key}.lora_up.weight"] = torch.randn(module.out_features, 4, generator=generator) * 0.5
            tensors[f"{key}.alpha"] = torch.tensor(4.0)
    (tmp_path / "Lora").mkdir()
    save_file(tensors, tmp_path / "Lora" / "shiny.safetensors")
    root = tmp_path / "hypernetworks"
    hypernet.save(sdxl_network((SDXL_CONTEXT, *SDXL_SELF_SIZES)), root / "xl.pt")
    generator = Generator(pipe, library=Library(root), model=ModelInfo(name="tiny-xl"), lora_dir=tmp_path / "Lora")
    try:
        base = generate(generator, "a red circle")[0].image.tobytes()
        lora = generate(generator, "a red circle <lora:shiny:1>")[0].image.tobytes()
        zero = generate(generator, "a red circle <lora:shiny:0>")[0].image.tobytes()
        both = generate(generator, "a red circle <lora:shiny:1> <hypernet:xl:1>")[0].image.tobytes()
    finally:
        attention.uninstall(pipe.unet)
    assert lora != base and zero == base and both not in (base, lora)
