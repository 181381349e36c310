"""Web forms for mediation's user tasks. ``FORMS`` maps each user task of bpmn/mediation.bpmn
(BPMN id) to its form; deploying a diagram with a user task that has no form is refused."""
from flask_wtf import FlaskForm
from wtforms import HiddenField, RadioField, TextAreaField
from wtforms.validators import AnyOf, DataRequired, InputRequired, Length, Optional

OUTCOMES = {"agreement": "达成协议", "no_agreement": "未达成协议"}


class MediateForm(FlaskForm):
    case_no = HiddenField(validators=[DataRequired()])
    # validate_choice=False: WTForms' own choice message is English; AnyOf says it in Chinese.
    outcome = RadioField("调解结果", choices=list(OUTCOMES.items()), validate_choice=False, validators=[
        InputRequired("请选择调解结果"), AnyOf(list(OUTCOMES), message="请选择调解结果")])
    result = TextAreaField("调解情况", validators=[
        DataRequired("请填写调解情况"), Length(max=2000, message="不超过2000个字")])
    agreement = TextAreaField("协议内容（达成协议时填写，可不填）", validators=[
        Optional(), Length(max=2000, message="不超过2000个字")])


FORMS = {"mediate": MediateForm}
