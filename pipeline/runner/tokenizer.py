"""A T5-style tokenizer built in memory, for pipelines built without a model hub.

The Wan pipelines need only what ``_get_t5_prompt_embeds`` calls: ``<pad>`` = 0, ``</s>`` = 1
appended, ``max_length`` padding and an attention mask. A character-level SentencePiece-style
Unigram model over printable ASCII gives distinct ids for distinct prompts with a vocabulary
small enough for any text encoder (the ids are far below UMT5's 256,384). Built with
``tokenizers`` and wrapped in ``PreTrainedTokenizerFast``, it works with transformers 4 and 5.
"""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SPACE = "\u2581"  # SentencePiece's word-start marker


def build_tokenizer() -> PreTrainedTokenizerFast:
    chars = [chr(c) for c in range(33, 127)]
    vocab = [(PAD, 0.0), (EOS, 0.0), (UNK, 0.0), (SPACE, -1.0)]
    vocab += [(SPACE + c, -1.5) for c in chars]
    vocab += [(c, -2.0) for c in chars]
    model = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    model.pre_tokenizer = pre_tokenizers.Metaspace()
    model.decoder = decoders.Metaspace()
    model.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, 1)]
    )
    fast: Any = PreTrainedTokenizerFast  # untyped constructor
    tokenizer: PreTrainedTokenizerFast = fast(
        tokenizer_object=model, pad_token=PAD, eos_token=EOS, unk_token=UNK, model_max_length=512
    )
    return tokenizer
