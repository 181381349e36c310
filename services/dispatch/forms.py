"""Web forms for dispatch's user tasks. ``FORMS`` maps each user task of bpmn/dispatch.bpmn
(BPMN id) to its form; deploying a diagram with a user task that has no form is refused."""
from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from wtforms import (HiddenField, IntegerField, RadioField, SelectField, SelectMultipleField, StringField,
                     TextAreaField)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from services.common.reference import DEPARTMENTS

_DEPARTMENT_CHOICES = list(DEPARTMENTS.items())
# No department is preselected unless the DMN suggests one: one careless click must not misroute.
LEAD_DEPARTMENT_CHOICES = [("", "请选择承办部门"), *_DEPARTMENT_CHOICES]


def _lead_department():
    return SelectField("承办部门", choices=LEAD_DEPARTMENT_CHOICES, validators=[DataRequired("请选择承办部门")])


def _co_departments():
    return SelectMultipleField("协办部门（可多选）", choices=_DEPARTMENT_CHOICES, validators=[Optional()])


class CaseForm(FlaskForm):
    case_no = HiddenField(validators=[DataRequired()])


class AssignForm(CaseForm):
    department = _lead_department()
    co_departments = _co_departments()


class PoolForm(CaseForm):
    """放入认领池: any department may claim it."""


class ChiefForm(CaseForm):
    note = StringField("提请理由（可不填）", validators=[Optional(), Length(max=500, message="不超过500个字")])


class MediationForm(CaseForm):
    reason = StringField("转调解说明（可不填）", validators=[Optional(), Length(max=500, message="不超过500个字")])


class MergeForm(CaseForm):
    into = StringField("并入的案件编号", validators=[DataRequired("请填写要并入的案件编号"),
                                                 Length(max=40, message="案件编号不超过40个字符")])


class RejectForm(CaseForm):
    reason = TextAreaField("不予受理的理由（诉求人可见）", validators=[
        DataRequired("请填写不予受理的理由"), Length(max=500, message="不超过500个字")])


class ClaimForm(CaseForm):
    """认领: the claiming department becomes the lead."""


class InstructForm(CaseForm):
    department = _lead_department()
    co_departments = _co_departments()
    instruction = TextAreaField("批示意见", validators=[
        DataRequired("请填写批示意见"), Length(max=1000, message="不超过1000个字")])


class AcceptForm(CaseForm):
    """受理: the department takes the case (the first to accept is the first-inquiry owner)."""


class ReturnForm(CaseForm):
    reason = TextAreaField("退回理由", validators=[
        DataRequired("请填写退回理由"), Length(max=500, message="不超过500个字")])


def _attachments():
    # Checked by content when the act runs (services/common/uploads.py), not here.
    return MultipleFileField("附件（可选：图片或 PDF）")


class ReplyForm(CaseForm):
    reply = TextAreaField("办理结果（答复诉求人）", validators=[
        DataRequired("请填写办理结果"), Length(max=2000, message="不超过2000个字")])
    attachments = _attachments()


class ExtensionForm(CaseForm):
    days = IntegerField("延长工作日数", validators=[
        InputRequired("请填写延长的工作日数"), NumberRange(min=1, max=30, message="须为1至30个工作日")])
    reason = TextAreaField("延期理由", validators=[
        DataRequired("请填写延期理由"), Length(max=500, message="不超过500个字")])


class ExtensionDecisionForm(CaseForm):
    decision = RadioField("审批意见", choices=[("approve", "同意延期"), ("refuse", "不同意")],
                          validators=[DataRequired("请选择是否同意")])
    note = StringField("说明（不同意时必填）", validators=[Optional(), Length(max=500, message="不超过500个字")])


class DesignateForm(CaseForm):
    department = _lead_department()
    co_departments = _co_departments()


class BulkAssignForm(FlaskForm):
    """批量交办: several cases of the queue to one lead department."""
    case_nos = SelectMultipleField("所选案件", choices=[], validate_choice=False,
                                   validators=[DataRequired("请先勾选要交办的案件")])
    department = _lead_department()


class NoteForm(CaseForm):
    """办理记录 / 协办意见: not a step of the process, so not in FORMS."""
    text = TextAreaField("办理记录", validators=[DataRequired("请填写办理记录"), Length(max=1000, message="不超过1000个字")])
    attachments = _attachments()


FORMS = {
    "assign": AssignForm,
    "claim": ClaimForm,
    "chief_instruction": InstructForm,
    "accept": AcceptForm,
    "resolve": ReplyForm,
    "fallback": DesignateForm,
    "approve_extension": ExtensionDecisionForm,
}
