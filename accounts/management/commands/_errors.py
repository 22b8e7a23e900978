"""What the accounts commands print for a model's ValidationError."""

from django.core.exceptions import ValidationError


def validation_message(exc: ValidationError) -> str:
    """One line: each field and its messages ("monthly_images: Ensure this value is greater than ...")."""
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    return " ".join(exc.messages)
