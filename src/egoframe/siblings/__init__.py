"""LEGO's sibling systems in the same framework: SmartEdit, MGIE and ReasonPix2Pix.

Same UNet, VAE, text encoder, LLaVA and evaluation as LEGO; only the connector (connectors.py) that turns
the multimodal LLM's features into the UNet's condition differs. Nothing heavy is imported here.
"""
