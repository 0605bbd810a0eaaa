"""Names the fine-tuning options accept, importable without torch."""

#: What sits on top of a text tower's token states: the family's pooling, or a BiLSTM
#: with dot-product attention over its outputs (``--model-arg text_head=bilstm-attention``).
TEXT_HEADS = ("pool", "bilstm-attention")
FINETUNABLE = "minilm, hf:MODEL (BERT/RoBERTa/XLNet/GPT-2-style), efficientnet-lite0, clip (its image tower)"
#: ``--model-arg text_pool=``: ``auto`` pools as the checkpoint was trained (``minilm``: mean) or by model family (``towers.pooling_for``);
#: the others force one: the first token, the last valid token, the max or the mean over
#: valid tokens (sentence-transformers models such as ``minilm`` were trained mean-pooled).
TEXT_POOLS = ("auto", "cls", "last", "max", "mean")
