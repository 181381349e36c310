"""Forms for dispatch's user tasks, keyed by the BPMN id of the task they complete."""
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, TextAreaField
from wtforms.validators import DataRequired, Length

from services.common.reference import DEPARTMENTS


class AssignForm(FlaskForm):
    case_no = HiddenField(validators=[DataRequired()])
    # No department is preselected unless the DMN suggests one: one careless click must not misroute.
    department = SelectField("承办部门", choices=[("", "请选择承办部门"), *DEPARTMENTS.items()],
                             validators=[DataRequired("请选择承办部门")])


class HandleForm(FlaskForm):
    case_no = HiddenField(validators=[DataRequired()])
    reply = TextAreaField("办理结果（答复诉求人）", validators=[
        DataRequired("请填写办理结果"), Length(max=2000, message="不超过2000个字")])


FORMS = {"assign": AssignForm, "handle": HandleForm}
