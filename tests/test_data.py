"""Audio–caption dataset loading (diffusers_impact.training.data) on small folders built in the test."""

import collections
import functools
import json
import logging

import datasets
import numpy as np
import pytest
import soundfile
import torch

from diffusers_impact.audio import load_audio, prepare_segment
from diffusers_impact.training.data import AudioCaptionDataset, collate_audio_captions, load_audio_dataset


def tone(frequency, seconds=0.5, sampling_rate=16000, amplitude=0.3):
    time = np.arange(int(seconds * sampling_rate)) / sampling_rate
    return (amplitude * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def write_wav(path, waveform, sampling_rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, waveform, sampling_rate, subtype="FLOAT" if path.suffix == ".wav" else None)
    return path


def captions_by_file(dataset):
    return {row["audio"]["path"].rsplit("/", 1)[-1]: row["captions"] for row in dataset}


def test_csv_folder_merges_rows_of_the_same_file(tmp_path):
    for name, frequency in (("dog.wav", 300), ("rain.wav", 600), ("cat.wav", 900)):
        write_wav(tmp_path / name, tone(frequency))
    (tmp_path / "metadata.csv").write_text(
        "file_name,caption\n"
        "dog.wav,a dog barks\n"
        "rain.wav,rain on a roof\n"
        "dog.wav,barking in the distance\n"
        'cat.wav,"a cat, meowing"\n'
        "dog.wav,a dog barks\n"
    )
    dataset = load_audio_dataset(str(tmp_path))
    assert isinstance(dataset, datasets.Dataset)
    assert dataset.column_names == ["audio", "captions"]
    assert dataset.features["audio"] == datasets.Audio(decode=False)
    assert len(dataset) == 3
    # One row per file, in order of first appearance, with every caption in file order (duplicates kept).
    assert [row["audio"]["path"] for row in dataset] == [str(tmp_path / n) for n in ("dog.wav", "rain.wav", "cat.wav")]
    assert dataset[0]["captions"] == ["a dog barks", "barking in the distance", "a dog barks"]
    assert dataset[1]["captions"] == ["rain on a roof"]
    assert dataset[2]["captions"] == ["a cat, meowing"]
    assert dataset[0]["audio"]["bytes"] is None
    np.testing.assert_allclose(load_audio(dataset[1]["audio"]), tone(600), atol=1e-7)


def test_jsonl_folder_with_list_captions_and_subfolders(tmp_path):
    write_wav(tmp_path / "a.wav", tone(300))
    write_wav(tmp_path / "clips" / "b.flac", tone(500))
    rows = [
        {"file_name": "a.wav", "text": ["first", "second"], "source": "x"},
        {"file_name": "clips/b.flac", "text": ["third"], "source": "y"},
        {"file_name": "a.wav", "text": ["fourth"], "source": "z"},
    ]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    dataset = load_audio_dataset(tmp_path, caption_column="text")
    assert dataset.column_names == ["audio", "captions"]
    assert captions_by_file(dataset) == {"a.wav": ["first", "second", "fourth"], "b.flac": ["third"]}
    assert dataset[1]["audio"]["path"] == str(tmp_path / "clips" / "b.flac")


def test_rows_without_captions_are_dropped(tmp_path):
    for name in ("a.wav", "b.wav", "c.wav"):
        write_wav(tmp_path / name, tone(400))
    (tmp_path / "metadata.csv").write_text("file_name,caption\na.wav,\nb.wav,  \nc.wav,kept\na.wav,now captioned\n")
    dataset = load_audio_dataset(tmp_path)
    assert captions_by_file(dataset) == {"a.wav": ["now captioned"], "c.wav": ["kept"]}


@pytest.mark.parametrize("metadata", ["metadata.csv", "metadata.jsonl"])
def test_rows_that_are_not_utf8_are_skipped_naming_the_file_and_lines(tmp_path, caplog, metadata):
    for name in ("a.wav", "b.wav", "c.wav"):
        write_wav(tmp_path / name, tone(400))
    rows = [(b"a.wav", b"a caf\xe9 (Latin-1)"), (b"b.wav", b"kept"), (b"c.wav", b"\xff\xfe"), (b"a.wav", b"also kept")]
    if metadata.endswith(".csv"):
        content, bad_lines = b"file_name,caption\n" + b"".join(b"%s,%s\n" % row for row in rows), "[2, 4]"
    else:
        content, bad_lines = b"".join(b'{"file_name": "%s", "caption": "%s"}\n' % row for row in rows), "[1, 3]"
    (tmp_path / metadata).write_bytes(content)
    with caplog.at_level(logging.WARNING):
        dataset = load_audio_dataset(tmp_path)
    assert captions_by_file(dataset) == {"a.wav": ["also kept"], "b.wav": ["kept"]}
    assert f"Skipped 2 row(s) of {tmp_path / metadata} that are not UTF-8 text, on line(s) {bad_lines}" in caplog.text


def test_folder_without_metadata(tmp_path):
    write_wav(tmp_path / "one.wav", tone(300))
    write_wav(tmp_path / "two.wav", tone(400))
    write_wav(tmp_path / "nested" / "three.wav", tone(500))
    (tmp_path / "notes.txt").write_text("not audio")
    dataset = load_audio_dataset(tmp_path, caption_column=None)
    assert dataset.column_names == ["audio"]
    assert sorted(row["audio"]["path"].rsplit("/", 1)[-1] for row in dataset) == ["one.wav", "three.wav", "two.wav"]
    with pytest.raises(ValueError, match=r"caption_column='caption'.*\['audio'\]"):
        load_audio_dataset(tmp_path)


def test_split_subfolders(tmp_path):
    for split, name in (("train", "t.wav"), ("test", "e.wav")):
        write_wav(tmp_path / split / name, tone(300))
        (tmp_path / split / "metadata.csv").write_text(f"file_name,caption\n{name},{split} caption\n")
    assert load_audio_dataset(tmp_path)["captions"][:] == [["train caption"]]
    assert load_audio_dataset(tmp_path, split="test")["captions"][:] == [["test caption"]]
    with pytest.raises(ValueError, match="validation"):
        load_audio_dataset(tmp_path, split="validation")


def test_saved_dataset_with_other_column_names(tmp_path):
    paths = [str(write_wav(tmp_path / "audio" / f"{i}.wav", tone(300 + 100 * i))) for i in range(3)]
    saved = datasets.Dataset.from_dict(
        {"sound": paths, "description": [["low"], ["middle", "mid"], ["high"]], "extra": [1, 2, 3]}
    ).cast_column("sound", datasets.Audio())
    saved.save_to_disk(str(tmp_path / "saved"))

    dataset = load_audio_dataset(str(tmp_path / "saved"), audio_column="sound", caption_column="description")
    assert dataset.column_names == ["audio", "captions"]
    assert dataset["captions"][:] == [["low"], ["middle", "mid"], ["high"]]
    # save_to_disk embeds the files: the rows carry bytes, which decode to the original audio.
    assert dataset[1]["audio"]["bytes"] is not None
    np.testing.assert_allclose(load_audio(dataset[1]["audio"]), tone(400), atol=1e-7)

    with pytest.raises(ValueError, match=r"audio_column='audio'.*\['sound', 'description', 'extra'\]"):
        load_audio_dataset(str(tmp_path / "saved"), caption_column="description")
    with pytest.raises(ValueError, match=r"caption_column='caption'.*\['sound', 'description', 'extra'\]"):
        load_audio_dataset(str(tmp_path / "saved"), audio_column="sound")


def test_saved_dataset_dict_and_path_strings(tmp_path):
    path = str(write_wav(tmp_path / "x.wav", tone(300)))
    # A plain string column of paths is cast to undecoded Audio too.
    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"audio": [path, path], "caption": ["first", "second"]}),
            "test": datasets.Dataset.from_dict({"audio": [path], "caption": ["held out"]}),
        }
    )
    splits.save_to_disk(str(tmp_path / "saved"))
    train = load_audio_dataset(str(tmp_path / "saved"))
    assert len(train) == 1 and train[0]["captions"] == ["first", "second"]  # same path: merged
    assert train[0]["audio"] == {"bytes": None, "path": path}
    assert load_audio_dataset(str(tmp_path / "saved"), split="test")["captions"][:] == [["held out"]]
    with pytest.raises(ValueError, match=r"'validation'.*\['train', 'test'\]"):
        load_audio_dataset(str(tmp_path / "saved"), split="validation")


def test_embedded_rows_are_merged_only_for_the_same_file(tmp_path):
    a = write_wav(tmp_path / "a.wav", tone(300)).read_bytes()
    b = write_wav(tmp_path / "b.wav", tone(300, seconds=0.25)).read_bytes()
    table = datasets.Dataset.from_dict(
        {
            "audio": [
                {"bytes": a, "path": "clip.wav"},
                {"bytes": b, "path": "clip.wav"},  # same name, another file
                {"bytes": a, "path": "clip.wav"},
                {"bytes": a, "path": None},  # no path: never merged
                {"bytes": a, "path": None},
            ],
            "caption": ["one", "two", "three", "four", "five"],
        }
    )
    table.save_to_disk(str(tmp_path / "saved"))
    dataset = load_audio_dataset(str(tmp_path / "saved"))
    assert dataset["captions"][:] == [["one", "three"], ["two"], ["four"], ["five"]]


def test_missing_local_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_audio_dataset(str(tmp_path / "does_not_exist"))


@pytest.fixture()
def troubled_folder(tmp_path):
    write_wav(tmp_path / "good.wav", tone(440, seconds=1.0))
    write_wav(tmp_path / "stereo44k.wav", np.stack([tone(1000, 2.0, 44100), tone(1000, 2.0, 44100)], 1), 44100)
    (tmp_path / "garbage.wav").write_bytes(b"RIFF....WAVEjunk" * 20)
    (tmp_path / "zero_bytes.wav").write_bytes(b"")
    write_wav(tmp_path / "no_samples.wav", np.zeros(0, dtype=np.float32))
    write_wav(tmp_path / "silent.wav", np.zeros(16000, dtype=np.float32))
    write_wav(tmp_path / "nan.wav", np.full(16000, np.nan, dtype=np.float32))
    (tmp_path / "metadata.csv").write_text(
        "file_name,caption\n"
        "good.wav,a tone\n"
        "garbage.wav,broken\n"
        "stereo44k.wav,a high tone\n"
        "zero_bytes.wav,nothing\n"
        "no_samples.wav,no samples\n"
        "silent.wav,silence\n"
        "missing.wav,lost file\n"
        "nan.wav,not a number\n"
        "good.wav,a sine wave\n"
    )
    return tmp_path


def test_skip_reasons_and_counts(troubled_folder):
    dataset = AudioCaptionDataset(load_audio_dataset(troubled_folder))
    assert len(dataset) == 8
    examples = [dataset[i] for i in range(len(dataset))]
    reasons = {ex["captions"][0]: ex["skip_reason"] for ex in examples}
    assert reasons == {
        "a tone": None,
        "broken": "unreadable",
        "a high tone": None,
        "nothing": "unreadable",
        "no samples": "empty",
        "silence": "silent",
        "lost file": "unreadable",
        "not a number": "unreadable",
    }
    assert [ex["index"] for ex in examples] == list(range(8))
    assert all((ex["waveform"] is None) == (ex["skip_reason"] is not None) for ex in examples)
    good, high = examples[0], examples[2]
    assert good["captions"] == ["a tone", "a sine wave"]
    np.testing.assert_allclose(good["waveform"], tone(440, seconds=1.0), atol=1e-7)
    assert high["waveform"].dtype == np.float32 and high["waveform"].shape == (32000,)  # 44.1 kHz stereo → 16 kHz

    batch = collate_audio_captions(examples, np.random.default_rng(0), num_samples=24000)
    assert batch["skipped"] == collections.Counter({"unreadable": 4, "empty": 1, "silent": 1})
    assert batch["indices"] == [0, 2]
    assert batch["waveforms"].dtype == torch.float32 and batch["waveforms"].shape == (2, 24000)
    assert batch["captions"][0] in ("a tone", "a sine wave") and batch["captions"][1] == "a high tone"
    assert torch.all(batch["waveforms"].abs().amax(dim=1) == 0.5)
    assert torch.all(batch["waveforms"][0, 16000:] == 0)  # 1 s file padded


def test_dataloader_with_collate(troubled_folder):
    dataset = AudioCaptionDataset(load_audio_dataset(troubled_folder))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=4,
        collate_fn=functools.partial(collate_audio_captions, generator=np.random.default_rng(0), num_samples=16000),
    )
    batches = list(loader)
    assert [batch["waveforms"].shape[0] for batch in batches] == [2, 0]
    assert batches[1]["waveforms"].shape == (0, 16000) and batches[1]["captions"] == []
    assert sum((batch["skipped"] for batch in batches), collections.Counter()) == {
        "unreadable": 4,
        "empty": 1,
        "silent": 1,
    }


def test_collate_when_everything_is_skipped():
    examples = [
        {"index": 0, "waveform": None, "captions": ["a"], "skip_reason": "silent"},
        {"index": 1, "waveform": None, "captions": ["b"], "skip_reason": "silent"},
        {"index": 2, "waveform": None, "captions": ["c"], "skip_reason": "empty"},
    ]
    batch = collate_audio_captions(examples, np.random.default_rng(0), num_samples=1000)
    assert batch["waveforms"].shape == (0, 1000) and batch["waveforms"].dtype == torch.float32
    assert batch["captions"] == [] and batch["indices"] == []
    assert batch["skipped"] == collections.Counter({"silent": 2, "empty": 1})
    assert collate_audio_captions([], np.random.default_rng(0))["waveforms"].shape == (0, 163840)


def test_collate_crops_and_captions_follow_the_generator():
    waveform = np.random.default_rng(3).normal(size=50000).astype(np.float32)
    captions = ["one", "two", "three", "four"]
    example = {"index": 7, "waveform": waveform, "captions": captions, "skip_reason": None}
    batch = collate_audio_captions([example], np.random.default_rng(11), num_samples=20000)
    # The generator draws the crop start first, then the caption.
    generator = np.random.default_rng(11)
    expected_segment = prepare_segment(waveform, num_samples=20000, generator=generator)
    expected_caption = captions[int(generator.integers(len(captions)))]
    assert np.array_equal(batch["waveforms"][0].numpy(), expected_segment)
    assert batch["captions"] == [expected_caption] and batch["indices"] == [7]

    def draws(seed, count=40):
        generator = np.random.default_rng(seed)
        return [collate_audio_captions([example], generator, num_samples=20000)["captions"][0] for _ in range(count)]

    assert draws(0) == draws(0)  # deterministic per seed
    assert draws(0) != draws(1)
    assert set(draws(0)) == set(captions)  # every caption gets drawn
    assert max(collections.Counter(draws(2, 400)).values()) < 140  # roughly uniform (expected 100 each)


def test_collate_example_without_captions_gets_empty_string():
    example = {"index": 0, "waveform": tone(300), "captions": [], "skip_reason": None}
    assert collate_audio_captions([example], np.random.default_rng(0), num_samples=8000)["captions"] == [""]


def test_dataset_switches_decoding_audio_off(tmp_path):
    path = str(write_wav(tmp_path / "a.wav", tone(300)))
    table = datasets.Dataset.from_dict({"audio": [path]}).cast_column("audio", datasets.Audio())
    dataset = AudioCaptionDataset(table)
    assert dataset.dataset.features["audio"].decode is False
    example = dataset[0]
    assert example["captions"] == [] and example["skip_reason"] is None
    np.testing.assert_allclose(example["waveform"], tone(300), atol=1e-7)
    with pytest.raises(ValueError, match=r"\['wav'\]"):
        AudioCaptionDataset(datasets.Dataset.from_dict({"wav": [path]}))


def test_without_captions_every_audio_file_appears_once(tmp_path):
    """Unconditional data: rows repeating a file (one per caption) must not over-sample that file."""
    for name in ("a.wav", "b.wav"):
        soundfile.write(tmp_path / name, np.sin(np.arange(1600) / 5.0) * 0.3, 16000)
    (tmp_path / "metadata.csv").write_text("file_name,caption\na.wav,one\na.wav,two\na.wav,three\nb.wav,four\n")
    assert len(load_audio_dataset(str(tmp_path), caption_column=None)) == 2
    assert len(load_audio_dataset(str(tmp_path))) == 2


def test_collating_with_one_generator_per_example_equals_collating_each_example_alone():
    from diffusers_impact.training.data import collate_audio_captions

    examples = [
        {
            "index": index,
            "waveform": np.sin(np.arange(100) * (index + 1)),
            "captions": ["a", "b", "c"],
            "skip_reason": None,
        }
        for index in range(3)
    ]
    together = collate_audio_captions(examples, [np.random.default_rng(seed) for seed in (1, 2, 3)], num_samples=16)
    for index, seed in enumerate((1, 2, 3)):
        alone = collate_audio_captions([examples[index]], [np.random.default_rng(seed)], num_samples=16)
        assert torch.equal(together["waveforms"][index], alone["waveforms"][0])
        assert together["captions"][index] == alone["captions"][0]
    with pytest.raises(ValueError, match="2 generators for 3 examples"):
        collate_audio_captions(examples, [np.random.default_rng(0)] * 2, num_samples=16)
