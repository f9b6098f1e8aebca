"""`mmdetect pretrain`: masked-language-model pretraining of the text encoder on unlabeled listings,
whole-word masked over MeCab words; writes a save_pretrained directory model.text.pretrained loads.
"""
