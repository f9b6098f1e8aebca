"""`mmdetect pretrain`: masked-language-model pretraining of the text encoder on unlabeled
listings (domain-adaptive pretraining), whole-word masked over MeCab words, Lightning-driven,
resumable; writes a `save_pretrained` directory that `model.text.pretrained` loads.

  corpus.py   listing texts from any JSONL (snapshots' listings.jsonl, traffic_unlabeled)
  masking.py  whole-word masking: HF's collator, fed word offsets from WordPiece's `##` marks
  module.py   MLMModule (a LightningModule around BertForMaskedLM) and MLMDataModule
  cli.py      the LightningCLI behind the verb
"""
