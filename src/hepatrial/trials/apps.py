"""Django app configuration for the trial store."""

from django.apps import AppConfig


class TrialsConfig(AppConfig):
    """The ``trials`` app: registers the audit system checks and history on the user model."""

    name = "hepatrial.trials"
    label = "trials"
    verbose_name = "Trial records"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from hepatrial.trials import checks as trial_checks

        checks.register(trial_checks.check_models_have_history, checks.Tags.models)
        checks.register(trial_checks.check_use_tz, checks.Tags.compatibility)

        from hepatrial.trials.services import login_events

        login_events.connect()
