import open_clip

from shared.encoders.clip_tokenizer import MAX_LENGTH, clip_tokenizer


def test_ids_equal_open_clips_tokenizer():
    """open_clip's tokenizer is CLIP's own; ours must give the same ids (open_clip pads with 0, SD with EOS)."""
    tokenizer = clip_tokenizer()
    assert len(tokenizer) == 49408
    for text in [
        "a photo of a dog",
        "A photo of a Cyan cross, bell!",
        "yellow  star chirp, 4k, high resolution",
    ]:
        ids = tokenizer(text, padding="max_length", max_length=MAX_LENGTH, truncation=True).input_ids
        reference = open_clip.tokenize([text])[0].tolist()
        n = reference.index(49407) + 1
        assert ids[:n] == reference[:n]
        assert ids[n:] == [49407] * (MAX_LENGTH - n)
    assert tokenizer("a photo of").input_ids == [49406, 320, 1125, 539, 49407]


def test_saved_and_reloaded(tmp_path):
    tokenizer = clip_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    reloaded = type(tokenizer).from_pretrained(tmp_path)
    assert reloaded("a photo of a dog").input_ids == tokenizer("a photo of a dog").input_ids
