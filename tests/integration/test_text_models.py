"""Text emotion, emotion sequences and distributional embeddings on tiny replicas."""

import json

import numpy as np
import pytest

from emoflow.errors import ConfigError, ModelUnavailableError
from emoflow.models import ModelSpec
from emoflow.text.embeddings import EmotionWord2Vec, SequenceEncoder, documents_from_corpus
from emoflow.text.emotion import TextEmotionClassifier
from emoflow.text.sequences import emotion_sequence, sequence_tokens
from emoflow.types import EmotionScores

TEXT_LABELS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
SENTENCES = [
    "I am so happy today!",
    "That is disgusting.",
    "Why?",
    "I feel so sad and lonely tonight, " * 3,
    "Wow, I did not expect that at all!",
    "",
]


@pytest.fixture(scope="module")
def clf(replicas):
    return TextEmotionClassifier(str(replicas["text-emotion"]), batch_size=4)


@pytest.fixture(scope="module")
def encoder(replicas):
    return SequenceEncoder(str(replicas["distilbert"]), batch_size=3)


def test_classifier_labels_from_config_and_scores(clf):
    assert clf.labels == TEXT_LABELS and clf.max_length == 512
    out = clf(SENTENCES)
    assert len(out) == len(SENTENCES)
    for e in out:
        assert e.labels == TEXT_LABELS and sum(e.scores) == pytest.approx(1.0, abs=1e-5)


def test_classifier_batching_equals_one_by_one(clf):
    batched = clf.scores(SENTENCES)
    single = np.vstack([clf.scores([s]) for s in SENTENCES])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_classifier_truncates_at_the_model_limit(clf):
    long = "I am happy and sad at once. " * 400  # thousands of tokens
    assert clf.scores([long]).shape == (1, 7)


def test_sequences():
    e = EmotionScores(TEXT_LABELS, (0.05, 0.0, 0.1, 0.5, 0.15, 0.0, 0.2))
    assert emotion_sequence(e) == "joy__surprise__neutral"
    assert emotion_sequence(e, k=2, separator=" ") == "joy surprise"
    assert sequence_tokens("joy__surprise__neutral") == ["joy", "surprise", "neutral"]
    with pytest.raises(ConfigError):
        emotion_sequence(e, k=0)


def test_extraction_cls_and_layers(encoder, replicas):
    seqs = ["joy__surprise__neutral", "anger__disgust__fear", "sadness__neutral__joy", "fear__fear__fear"]
    cls = encoder(seqs)
    assert cls.shape == (4, encoder.dim) and np.isfinite(cls).all()
    np.testing.assert_allclose(cls[1], encoder([seqs[1]])[0], atol=1e-5)
    assert not np.allclose(cls[0], cls[2])  # order matters: contextual, not a bag of labels
    layers = SequenceEncoder(
        str(replicas["distilbert"]), pooling="layers", layers=(-2, -1), weights=(0.0, 1.0)
    )
    np.testing.assert_allclose(layers(seqs), cls, atol=1e-5)  # all weight on the last layer = CLS
    mean4 = SequenceEncoder(str(replicas["distilbert"]), pooling="layers")
    assert mean4.provenance().options["layers"] == [-4, -3, -2, -1] and mean4(seqs).shape == cls.shape
    with pytest.raises(ConfigError):
        SequenceEncoder(str(replicas["distilbert"]), pooling="layers", layers=(-1,), weights=(1.0, 2.0))
    with pytest.raises(ConfigError, match="does not exist"):
        SequenceEncoder(str(replicas["distilbert"]), pooling="layers", layers=(-9,))


def test_provenance_is_known_from_the_settings_alone(clf, encoder, replicas):
    """What a stage reports equals what the settings give without building it (results, the
    feature cache and fusion checkpoints use the latter)."""
    from emoflow.models import directory_digest
    from emoflow.text.embeddings import embedding_provenance

    rec = clf.provenance()
    assert (rec.id, rec.revision, rec.source) == (
        str(replicas["text-emotion"]),
        directory_digest(replicas["text-emotion"]),
        "local",
    )
    assert rec == ModelSpec(str(replicas["text-emotion"])).record() and not rec.options
    spec = ModelSpec(str(replicas["distilbert"]))
    assert encoder.describe() == embedding_provenance("cls", spec=spec).to_dict()
    layers = SequenceEncoder(spec, pooling="layers", layers=(-3, -1), weights=(1.0, 3.0))
    want = embedding_provenance("layers", spec=spec, layers=(-3, -1), weights=(1.0, 3.0))
    assert layers.provenance().to_dict() == want.to_dict()
    assert want.options == {
        "method": "extraction",
        "pooling": "layers",
        "layers": [-3, -1],
        "weights": [0.25, 0.75],
    }


def test_stages_run_on_a_given_model_and_tokenizer(clf, encoder):
    """Built by the caller (tests, notebooks): the spec only names the model, nothing loads."""
    spec = ModelSpec("org/never-downloaded", offline=True)
    given = TextEmotionClassifier(spec, model=clf.model, tokenizer=clf.tokenizer)
    np.testing.assert_allclose(given.scores(SENTENCES[:3]), clf.scores(SENTENCES[:3]), atol=1e-6)
    seqs = ["joy__surprise__neutral", "fear__fear__fear"]
    other = SequenceEncoder(spec, model=encoder.model, tokenizer=encoder.tokenizer)
    np.testing.assert_allclose(other(seqs), encoder(seqs), atol=1e-6)
    assert given.provenance().revision is None  # not in any cache, offline: unknown, not an error


def corpus_docs():
    flow = ["joy", "surprise", "neutral", "sadness", "fear", "neutral"] * 30
    other = ["anger", "disgust", "neutral"] * 40
    return [flow, other]


def test_word2vec_generation_is_reproducible_and_saved(tmp_path):
    a = EmotionWord2Vec.train(corpus_docs(), vector_size=8, epochs=20, seed=3)
    b = EmotionWord2Vec.train(corpus_docs(), vector_size=8, epochs=20, seed=3)
    seqs = ["joy__surprise__neutral", "anger__disgust__neutral"]
    np.testing.assert_array_equal(a(seqs), b(seqs))
    assert b.provenance().source == "given" and b.provenance().revision is None  # not saved anywhere
    a.save(tmp_path / "scheme")
    loaded = EmotionWord2Vec.load(tmp_path / "scheme")
    np.testing.assert_allclose(loaded(seqs), a(seqs))
    rec = loaded.provenance()
    assert rec.options["algorithm"] == "word2vec-skipgram" and "vocabulary" not in rec.options
    assert rec.source == "local" and rec.revision.startswith("sha256:")
    # saved, loaded or only read: the same record
    assert a.describe() == rec.to_dict() == EmotionWord2Vec.scheme_provenance(tmp_path / "scheme").to_dict()
    assert "path" not in json.loads((tmp_path / "scheme" / "scheme.json").read_text())
    # position weighting: the first token weighs most
    v = a.vectors
    expected = (3 * v["joy"] + 2 * v["surprise"] + 1 * v["neutral"]) / 6
    np.testing.assert_allclose(a(["joy__surprise__neutral"])[0], expected, atol=1e-6)
    # tokens that co-occur in the flow are closer than tokens that never do
    assert v.similarity("joy", "surprise") > v.similarity("joy", "disgust")
    assert not a(["unseenlabel"]).any()


def test_word2vec_errors(tmp_path):
    with pytest.raises(ConfigError):
        EmotionWord2Vec.train([[]])
    with pytest.raises(ModelUnavailableError, match="train-embeddings"):
        EmotionWord2Vec.load(tmp_path)


def test_documents_from_corpus_keeps_document_order():
    rows = [
        {"doc": "a", "index": 1, "sequence": "sadness__fear"},
        {"doc": "b", "index": 0, "sequence": "joy"},
        {"doc": "a", "index": 0, "sequence": "joy__neutral"},
    ]
    assert documents_from_corpus(rows) == [["joy", "neutral", "sadness", "fear"], ["joy"]]


def test_cli_emotion_corpus_and_train_embeddings(tmp_path, replicas):
    from tests.helpers import run_cli

    (tmp_path / "a.txt").write_text(
        "I am so happy today! Dr. Smith said it's fine.\n\nBut then I felt sad. Why?"
    )
    (tmp_path / "b.txt").write_text("That is disgusting. I am furious!")
    corpus = tmp_path / "corpus.jsonl"
    r = run_cli(
        "emotion-corpus",
        str(tmp_path / "a.txt"),
        str(tmp_path / "b.txt"),
        "--out",
        str(corpus),
        "--text-model",
        str(replicas["text-emotion"]),
    )
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    assert [r["text"] for r in rows][:2] == ["I am so happy today!", "Dr. Smith said it's fine."]
    assert len(rows) == 6 and all(len(sequence_tokens(r["sequence"])) == 3 for r in rows)
    assert rows[0]["scores"] == sorted(rows[0]["scores"], reverse=True)
    r = run_cli("train-embeddings", str(corpus), "--out", str(tmp_path / "scheme"), "--dim", "8")
    assert r.returncode == 0, r.stderr
    assert EmotionWord2Vec.load(tmp_path / "scheme").dim == 8


def test_cli_missing_model_offline_exits_4(tmp_path):
    from tests.helpers import run_cli

    (tmp_path / "a.txt").write_text("Hello.")
    r = run_cli(
        "emotion-corpus",
        str(tmp_path / "a.txt"),
        "--out",
        str(tmp_path / "c.jsonl"),
        "--text-model",
        "someorg/never-downloaded",
        "--offline",
    )
    assert r.returncode == 4 and r.stderr.startswith("error: ") and "someorg/never-downloaded" in r.stderr
    assert not (tmp_path / "c.jsonl").exists()
